/**
 * Start-up time and memory of `npm start` from the compiled release (node dist/…) against
 * `npm run dev` (tsx src/main.ts: what `npm start` ran before the release build), on the embedded
 * defaults against the Twilio emulator, alternating the two so that both see the same load:
 *
 *   npx tsx bench/startup.ts [rounds=5]
 *
 * Time: from spawning npm to the "rotator started" line (Redis, store and Twilio checks passed,
 * API listening, worker running). Memory: resident set size, read from /proc once started, of
 * Rotator's own node processes (tsx runs two: its launcher and the service) and of the whole
 * tree less the embedded redis-server and its supervisor (the same in both): npm's own node
 * process included. Needs dist/ (npm run build) and redis-server.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTwilioEmulator } from '../test/emulators/twilio/server.ts';

const rounds = Number(process.argv[2] ?? 5);
const variants = { 'npm run dev (tsx, sources)': ['run', 'dev'], 'npm start (node dist/)': ['start'] } as const;
type Variant = keyof typeof variants;

function tree(root: number): Array<{ pid: number; argv: string; rssKb: number }> {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      parent.set(Number(e), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone
    }
  }
  const under = (p: number): boolean => p === root || (p > 1 && parent.has(p) && under(parent.get(p)!));
  const out = [];
  for (const pid of parent.keys()) {
    if (!under(pid)) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
      out.push({ pid, argv, rssKb });
    } catch {
      // gone
    }
  }
  return out;
}

async function once(variant: Variant, emu: Awaited<ReturnType<typeof startTwilioEmulator>>): Promise<{ ms: number; serviceMb: number; treeMb: number }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'rotator-startup-'));
  const started = performance.now();
  const child = spawn('npm', [...variants[variant]], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      DATA_DIR: dataDir,
      PORT: '0',
      TWILIO_ACCOUNT_SID: emu.parent.accountSid,
      TWILIO_AUTH_TOKEN: emu.parent.authToken,
      TWILIO_BASE_URL: emu.url,
      ACCOUNT_SYNC_SECONDS: '0',
      COMPLIANCE_SCAN_SECONDS: '0',
      npm_config_update_notifier: 'false',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const ms = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('rotator started')) resolve(performance.now() - started);
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => reject(new Error(`${variant} exited (${code}) before starting: ${out}`)));
  });
  const procs = tree(child.pid!).filter((p) => !p.argv.startsWith('redis-server') && !p.argv.includes('rotator-redis-supervisor'));
  const service = procs.filter((p) => /^node .*(dist\/src\/main\.js|src\/main\.ts)|tsx/.test(p.argv) && !p.argv.includes('npm'));
  const mb = (ps: typeof procs) => ps.reduce((s, p) => s + p.rssKb, 0) / 1024;
  child.kill('SIGINT');
  for (const p of service) {
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
  rmSync(dataDir, { recursive: true, force: true });
  return { ms, serviceMb: mb(service), treeMb: mb(procs) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const emu = await startTwilioEmulator({ subaccounts: 3 });
const results: Record<Variant, Array<{ ms: number; serviceMb: number; treeMb: number }>> = { 'npm run dev (tsx, sources)': [], 'npm start (node dist/)': [] };
// One unmeasured start each first: disk caches, npm's own first run.
for (const v of Object.keys(variants) as Variant[]) await once(v, emu);
for (let i = 0; i < rounds; i++) for (const v of Object.keys(variants) as Variant[]) results[v].push(await once(v, emu));
await emu.close();

const [before, after] = Object.keys(variants) as Variant[];
const row = (v: Variant) => {
  const r = results[v];
  return `| ${v} | ${median(r.map((x) => x.ms)).toFixed(0)} ms (${Math.min(...r.map((x) => x.ms)).toFixed(0)}–${Math.max(...r.map((x) => x.ms)).toFixed(0)}) | ${median(r.map((x) => x.serviceMb)).toFixed(0)} MB | ${median(r.map((x) => x.treeMb)).toFixed(0)} MB |`;
};
const ratio = (f: (x: { ms: number; serviceMb: number; treeMb: number }) => number) => (median(results[after!].map(f)) / median(results[before!].map(f))).toFixed(2);
console.log(`${rounds} starts of each, alternating; load average at the end ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} on ${process.env.HOSTNAME ?? 'this host'} (${(await import('node:os')).cpus().length} cores), node ${process.version}`);
console.log('| command | start-up, median (min–max) | RSS of Rotator\'s node processes | RSS of the tree, npm included, Redis not |');
console.log('|---|---|---|---|');
console.log(row(before!));
console.log(row(after!));
console.log(`| ratio dist/ ÷ tsx | ${ratio((x) => x.ms)} | ${ratio((x) => x.serviceMb)} | ${ratio((x) => x.treeMb)} |`);
