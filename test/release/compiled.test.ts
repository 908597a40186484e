import { spawn, type SpawnOptions } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, copyFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTwilioEmulator, type TwilioEmulator } from '../emulators/twilio/server.ts';
import { LogCapture, waitFor, within } from '../helpers/stack.ts';
import { mintToken } from '../../src/api/tokens.ts';
import { lines } from '../startup/support.ts';

/**
 * The compiled release (issue 17, item 1): `npm start` runs `node dist/src/main.js`, and serves and
 * rotates exactly as the sources do.
 *
 * In CI, ROTATOR_RELEASE_DIR names the directory deploy/build-release.sh assembled: dist/ and the
 * production dependencies alone, the file set of the image's runtime stage (no tsx, no
 * TypeScript, no sources). There, as root, the service also runs as an unprivileged user to whom
 * the release is read-only, with its data under DATA_DIR alone: what the image's non-root user
 * and read-only root file system ask. Elsewhere (a developer's `npm test`) the test compiles dist/
 * in this checkout first, as `npm start` would, and runs it here.
 */
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const env = process.env;
const releaseDir = env.ROTATOR_RELEASE_DIR ? resolve(env.ROTATOR_RELEASE_DIR) : repo;
const isRelease = releaseDir !== repo;
const NOBODY = 65534;

let emu: TwilioEmulator;
const scratch = mkdtempSync(join(tmpdir(), 'rotator-release-'));
const children: Run[] = [];

interface Run {
  pid: number;
  logs: LogCapture;
  exited: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
}

function run(cmd: string, args: string[], opts: SpawnOptions & { env: Record<string, string> }): Run {
  const logs = new LogCapture();
  const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => logs.write(d));
  child.stderr?.on('data', (d: Buffer) => logs.write(d));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const r: Run = { pid: child.pid!, logs, exited, kill: (s) => child.kill(s) };
  children.push(r);
  return r;
}

async function finished(r: Run, what: string, ms = 240_000): Promise<number | null> {
  return within(`${what}; output: ${r.logs.text()}`, r.exited, ms);
}

function baseEnv(dataDir: string, api: string): Record<string, string> {
  return {
    PATH: env.PATH ?? '',
    HOME: env.HOME ?? '',
    DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: '0',
    TWILIO_ACCOUNT_SID: emu.parent.accountSid,
    TWILIO_AUTH_TOKEN: emu.parent.authToken,
    TWILIO_BASE_URL: emu.url,
    DRAIN_SECONDS: '0',
    ACCOUNT_SYNC_SECONDS: '0',
    COMPLIANCE_SCAN_SECONDS: '0',
    API_TOKENS: api,
    npm_config_update_notifier: 'false',
  };
}

/** The API's URL from the start-up summary line, once it is printed. */
async function started(r: Run): Promise<string> {
  const line = await waitFor(
    'the start-up summary line',
    async () => {
      if ((await Promise.race([r.exited, Promise.resolve('running')])) !== 'running') throw new Error(`exited before starting: ${r.logs.text()}`);
      return r.logs.text().split('\n').find((l) => l.includes('rotator started'));
    },
    180_000,
  );
  return (JSON.parse(line) as { startup: { api: string } }).startup.api;
}

/** deploy/Dockerfile's HEALTHCHECK command (its exec form), to run as Docker would. */
function healthcheckCommand(): string[] {
  const line = readFileSync(join(repo, 'deploy', 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ').split('\n').find((l) => l.startsWith('HEALTHCHECK'))!;
  return JSON.parse(line.slice(line.indexOf('CMD ') + 4)) as string[];
}

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

/** Every process under `pid` (Linux /proc), with its command line split into arguments. */
function descendants(pid: number): Array<{ pid: number; argv: string[] }> {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name is in parentheses and may hold spaces: the parent pid follows the last ')'.
      const stat = readFileSync(join('/proc', entry, 'stat'), 'utf8');
      parentOf.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited meanwhile
    }
  }
  const out: Array<{ pid: number; argv: string[] }> = [];
  const under = (p: number): boolean => p === pid || (parentOf.has(p) && p > 1 && under(parentOf.get(p)!));
  for (const [p, parent] of parentOf) {
    if (p === pid || !under(parent)) continue;
    try {
      out.push({ pid: p, argv: readFileSync(join('/proc', String(p), 'cmdline'), 'utf8').split('\0').filter(Boolean) });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

async function call(api: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** Starts a rotation of `sid` and waits for it to end; returns the finished record. */
async function rotate(api: string, token: string, sid: string): Promise<{ id: string; status: string; oldKeySid?: string; newKeySid?: string; history: Array<{ step: string; status: string }> }> {
  const start = await call(api, token, 'POST', '/v1/rotations', { accountSid: sid, reason: 'compiled release' });
  expect(start.status, JSON.stringify(start.json)).toBe(202);
  const id = start.json.id as string;
  return waitFor(
    `rotation ${id} to end`,
    async () => {
      const r = await call(api, token, 'GET', `/v1/rotations/${id}`);
      const rec = r.json as unknown as Awaited<ReturnType<typeof rotate>>;
      return ['succeeded', 'failed', 'cancelled', 'rolled_back'].includes(rec.status) ? rec : undefined;
    },
    120_000,
  );
}

beforeAll(async () => {
  emu = await startTwilioEmulator({ subaccounts: 2 });
  if (!isRelease) {
    // As `npm start` would: compile dist/ when it is missing or older than a source file.
    const build = run(process.execPath, ['scripts/build.mjs', '--if-stale'], { cwd: repo, env: { PATH: env.PATH ?? '', HOME: env.HOME ?? '' } });
    expect(await finished(build, 'npm run build'), build.logs.text()).toBe(0);
  }
}, 300_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
  await emu?.close();
  rmSync(scratch, { recursive: true, force: true });
});

describe('the compiled release', () => {
  it('npm start runs node dist/src/main.js (no tsx), bootstraps and then rotates a subaccount through all four steps, and drains on SIGTERM', async () => {
    if (isRelease) {
      // The runtime stage's file set: production dependencies only, and no sources.
      expect(existsSync(join(releaseDir, 'node_modules', 'bullmq'))).toBe(true);
      for (const dev of ['tsx', 'typescript', 'vitest', 'esbuild']) expect(existsSync(join(releaseDir, 'node_modules', dev)), dev).toBe(false);
      expect(existsSync(join(releaseDir, 'src'))).toBe(false);
    }
    // The release build compiles the service alone: no tests, benchmarks, emulators or demo.
    expect(readdirSync(join(releaseDir, 'dist')).filter((f) => !f.startsWith('.')).sort()).toEqual(['providers', 'src', 'workers']);
    expect(existsSync(join(releaseDir, 'dist', 'src', 'demo.js'))).toBe(false);
    expect(existsSync(join(releaseDir, 'dist', 'src', 'state', 'lua', 'batch-create.lua'))).toBe(true);
    const admin = mintToken('release', 'admin');
    const npmStart = run('npm', ['start'], { cwd: releaseDir, env: baseEnv(join(scratch, 'npm-start'), admin.entry) });
    const api = await started(npmStart);

    const tree = descendants(npmStart.pid);
    const service = tree.find((p) => p.argv[0] === 'node');
    expect(service?.argv, JSON.stringify(tree)).toEqual(['node', 'dist/src/main.js', 'all']);
    expect(tree.filter((p) => p.argv.some((a) => a.includes('tsx'))), JSON.stringify(tree)).toEqual([]);

    for (const path of ['/healthz', '/readyz']) expect((await fetch(`${api}${path}`)).status, path).toBe(200);

    const sid = emu.subaccounts[0]!.sid;
    const bootstrap = await rotate(api, admin.token, sid);
    expect(bootstrap.status, JSON.stringify(bootstrap)).toBe('succeeded');
    const full = await rotate(api, admin.token, sid);
    expect(full.status, JSON.stringify(full)).toBe('succeeded');
    const steps = new Set(full.history.filter((h) => h.status === 'completed').map((h) => h.step));
    for (const step of ['create-secondary', 'operationalize', 'promote', 'delete-old']) expect(steps.has(step), `${step} in ${JSON.stringify(full.history)}`).toBe(true);
    // At Twilio: the key the bootstrap made is gone, the new one is the subaccount's only key.
    expect(full.oldKeySid).toBe(bootstrap.newKeySid);
    expect(emu.listKeys(sid).map((k) => k.sid)).toEqual([full.newKeySid]);

    process.kill(service!.pid, 'SIGTERM');
    expect(await finished(npmStart, 'npm start to exit after SIGTERM')).toBe(0);
    expect(npmStart.logs.text()).toContain('"msg":"draining"');
  }, 360_000);

  it('runs as an unprivileged user from a release it cannot write, with its data only under DATA_DIR', async (ctx) => {
    if (!isRelease || process.getuid?.() !== 0) {
      const why = !isRelease ? 'ROTATOR_RELEASE_DIR is unset (CI sets it after deploy/build-release.sh)' : 'not running as root, so cannot start a process as another user';
      console.log(`skipped: the unprivileged read-only run needs a release directory and root: ${why}`);
      ctx.skip();
      return;
    }
    // The scratch directory is private to root (mkdtemp: 0700): this user's data goes elsewhere.
    const data = mkdtempSync(join('/tmp', 'rotator-nobody-'));
    chownSync(data, NOBODY, NOBODY);
    try {
      const admin = mintToken('release', 'admin');
      // As the image runs it: node itself (no npm, whose cache would need a writable home), from
      // the release, /metrics and /healthz on METRICS_PORT.
      const metricsPort = String(await freePort());
      const service = run(process.execPath, ['dist/src/main.js', 'all'], { cwd: releaseDir, uid: NOBODY, gid: NOBODY, env: { ...baseEnv(data, admin.entry), HOME: '/nonexistent', METRICS_PORT: metricsPort } });
      const api = await started(service);
      expect((await fetch(`${api}/readyz`)).status).toBe(200);
      // The image's HEALTHCHECK, as that user, finds it healthy.
      const [hcCmd, ...hcArgs] = healthcheckCommand();
      const healthy = run(hcCmd === 'node' ? process.execPath : hcCmd!, hcArgs, { uid: NOBODY, gid: NOBODY, env: { PATH: env.PATH ?? '', METRICS_PORT: metricsPort, PORT: '0' } });
      expect(await finished(healthy, 'the HEALTHCHECK command', 60_000), healthy.logs.text()).toBe(0);
      const rec = await rotate(api, admin.token, emu.subaccounts[1]!.sid);
      expect(rec.status, JSON.stringify(rec)).toBe('succeeded');
      service.kill('SIGTERM');
      expect(await finished(service, 'the unprivileged service to exit after SIGTERM')).toBe(0);
      const unhealthy = run(process.execPath, hcArgs, { env: { PATH: env.PATH ?? '', METRICS_PORT: metricsPort, PORT: '0' } });
      expect(await finished(unhealthy, 'the HEALTHCHECK command on a stopped service', 60_000)).toBe(1);
      // The file store and the embedded Redis kept everything under DATA_DIR, owned by that user.
      expect(statSync(join(data, 'secrets')).uid).toBe(NOBODY);
      expect(statSync(join(data, 'redis')).uid).toBe(NOBODY);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  }, 360_000);

  it('npm start where nothing was built and nothing can build says so in one line', async () => {
    // A directory with the package's scripts but neither dist/ nor sources nor TypeScript: an
    // install whose release step was skipped.
    const bare = join(scratch, 'bare');
    mkdirSync(join(bare, 'scripts'), { recursive: true });
    writeFileSync(join(bare, 'package.json'), readFileSync(join(repo, 'package.json')));
    copyFileSync(join(repo, 'scripts', 'build.mjs'), join(bare, 'scripts', 'build.mjs'));
    const r = run('npm', ['start', '--silent'], { cwd: bare, env: { PATH: env.PATH ?? '', HOME: env.HOME ?? '', npm_config_update_notifier: 'false' } });
    expect(await finished(r, 'npm start in an empty install', 120_000)).not.toBe(0);
    expect(lines(r.logs.text())[0]).toBe('dist/ is missing: this install has no compiled release. Run `npm ci && npm run build` in a clone of the repository (or `npm run dev` to run the sources with tsx)');
  }, 120_000);
});
