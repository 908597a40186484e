import { spawn, execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, startApiHarness, type ApiHarness } from '../api/support.ts';
import { mintToken } from '../../src/api/tokens.ts';
import { EXIT } from '../../src/cli/rotator/exit-codes.ts';

/**
 * The `rotator` CLI as a user runs it: a real process against a real API (in this process, with a
 * worker, the Twilio emulator and a file store) on a loopback port. One stack for the whole file;
 * independent commands run side by side.
 *
 * bin/rotator.js runs the TypeScript source through tsx when there is no build, and tsx's start
 * costs about half a second of CPU per process (a bundle's, a fifth of that): the file spawns some 25. So the source is
 * compiled once here into one ES module (esbuild, as tsx would, its packages left to node_modules)
 * and most runs use that; bin/rotator.js itself runs in the tests that need no API.
 */
const BIN = new URL('../../bin/rotator.js', import.meta.url).pathname;
const ROOT = new URL('../../', import.meta.url).pathname;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

// A last guard against a hang: the commands are quick, but each process's start waits for a CPU, and on a loaded 2-core host that adds up.
describe('rotator CLI', { timeout: 300_000 }, () => {
  let h: ApiHarness;
  let url: string;
  let home: string;
  let sids: string[];
  /** Whatever the test has not named: no config file (HOME is empty), no inherited ROTATOR_*. */
  const baseEnv = (): Record<string, string> => ({ PATH: process.env.PATH ?? '', HOME: home, XDG_CONFIG_HOME: join(home, '.config') });

  let bundleDir: string;
  let bundle: string;

  function cli(args: string[], env: Record<string, string> = { ROTATOR_URL: url, ROTATOR_TOKEN: h.tokens.admin }, stdin?: string, entry = bundle): Promise<Ran> {
    const child = spawn(process.execPath, [entry, ...args], { env: { ...baseEnv(), ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin.end(stdin ?? '');
    return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
  }
  const api = async (path: string): Promise<unknown> => (await fetch(`${url}${path}`, { headers: bearer(h.tokens.admin) })).json();
  /** One line on stderr, and nothing on stdout: what every error must look like. */
  const oneErrorLine = (r: Ran): string => {
    expect(r.stdout).toBe('');
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^rotator: /);
    return lines[0]!;
  };

  beforeAll(async () => {
    // Inside node_modules, so that the bundle's imports of packages resolve as the source's do.
    await mkdir(join(ROOT, 'node_modules', '.cache'), { recursive: true });
    bundleDir = await mkdtemp(join(ROOT, 'node_modules', '.cache', 'rotator-cli-test-'));
    // Split, so that what a command imports on demand (audit verify: ioredis…) stays out of the others' start.
    await build({ entryPoints: [join(ROOT, 'src/cli/rotator.ts')], bundle: true, splitting: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', outdir: bundleDir, logLevel: 'silent' });
    bundle = join(bundleDir, 'rotator.js');
    h = await startApiHarness({ worker: true, stack: { subaccounts: 5, drainSeconds: 0 }, logLevel: 'info' });
    sids = h.stack.emu.subaccounts.map((s) => s.sid);
    await h.stack.seedAll();
    await h.rt.accounts.upsertMany(sids.map((s) => ({ accountSid: s, friendlyName: s, status: 'active', ownerAccountSid: h.stack.emu.parent.accountSid })));
    for (const s of sids) await h.rt.credentials.ensure({ accountSid: s, name: 'default' });
    url = await h.app.listen({ host: '127.0.0.1', port: 0 });
    home = await mkdtemp(join(tmpdir(), 'rotator-cli-home-'));
  });
  afterAll(async () => {
    await h?.close();
    if (home) await rm(home, { recursive: true, force: true });
    if (bundleDir) await rm(bundleDir, { recursive: true, force: true });
  });

  // Alone: the fault it injects would fail any other rotation running meanwhile.
  it('rotate --follow exits 1 and says why when the rotation fails (Twilio refuses the admin credential)', async () => {
    h.stack.emu.setFaults({ failNext: { count: 1000, status: 401, match: { method: 'POST', path: '/Keys\\.json$' } } });
    try {
      const r = await cli(['rotate', sids[1]!, '--follow']);
      expect(r.code, r.stdout + r.stderr).toBe(EXIT.failed);
      const last = r.stdout.trim().split('\n').at(-1)!;
      expect(last).toMatch(/^rotation [0-9a-f-]{36} failed: .*admin credential.* \[twilio_admin_unauthorized\]$/);
      expect(r.stdout).toMatch(/create-secondary\s+failed/);
    } finally {
      h.stack.emu.setFaults({ failNext: null });
    }
  });

  // The rest run side by side: each spawns its own processes and touches its own subaccounts.
  it.concurrent('rotate --follow prints every step as it happens and exits 0 when the rotation succeeds; --json output is the API\'s; a conflict is exit 6', async () => {
    const r = await cli(['rotate', sids[0]!, '--reason', 'cli test', '--follow']);
    expect(r.code, r.stderr).toBe(EXIT.ok);
    const lines = r.stdout.trim().split('\n');
    const id = /^rotation ([0-9a-f-]{36}) of /.exec(lines[0]!)?.[1];
    expect(id).toBeDefined();
    const rec = (await api(`/v1/rotations/${id}`)) as { status: string; newKeySid: string; oldKeySid: string; history: Array<{ step: string; status: string }> };
    expect(rec.status).toBe('succeeded');
    // Every transition of the record's history after the start, in order, one line each.
    const printed = lines.slice(1, -1).map((l) => l.split(/\s+/).slice(1, 3).join(' '));
    const history = rec.history.map((e) => `${e.step} ${e.status}`);
    expect(history.slice(-printed.length)).toEqual(printed);
    for (const step of ['create-secondary', 'operationalize', 'promote', 'delete-old']) expect(printed.some((p) => p.startsWith(`${step} completed`)), `${step} completed in:\n${r.stdout}`).toBe(true);
    expect(lines.at(-1)).toBe(`rotation ${id} succeeded: new key ${rec.newKeySid}, old key ${rec.oldKeySid} deleted`);

    const [status, list, policies] = await Promise.all([cli(['status', id!, '--json']), cli(['list', '--json', '--account', sids[0]!]), cli(['--json', 'policies'])]);
    for (const x of [status, list, policies]) expect(x.code, x.stderr).toBe(EXIT.ok);
    expect(JSON.parse(status.stdout)).toEqual(rec);
    expect(JSON.parse(list.stdout)).toEqual(await api(`/v1/rotations?accountSid=${sids[0]}`));
    expect(JSON.parse(policies.stdout)).toEqual(await api('/v1/policies'));

    // Too late to cancel: 409, exit 6, one line on stderr, and with --json the API's body on stdout.
    const late = await cli(['cancel', id!, '--json']);
    expect(late.code).toBe(EXIT.conflict);
    expect(JSON.parse(late.stdout)).toMatchObject({ id, error: { code: 'action_not_allowed' } });
    expect(late.stderr).toMatch(/^rotator: cancel refused: .* \[action_not_allowed\]\n$/);
  });

  it.concurrent('rotate --json prints the 202 answer; status --follow prints the history so far, then the rest', async () => {
    const started = await cli(['rotate', sids[2]!, '--json', '--dry-run']);
    expect(started.code, started.stderr).toBe(EXIT.ok);
    const body = JSON.parse(started.stdout) as { id: string; accountSid: string; credential: string; status: string; step: string };
    expect(body).toMatchObject({ accountSid: sids[2], credential: 'default' });
    expect(Object.keys(body).sort()).toEqual(['accountSid', 'credential', 'id', 'status', 'step']);
    // Following it afterwards prints its history so far, then what is left, and the same end.
    const followed = await cli(['status', body.id, '--follow']);
    expect(followed.code, followed.stderr).toBe(EXIT.ok);
    expect(followed.stdout).toMatch(/succeeded: dry run: nothing changed\n$/);
  });

  it.concurrent('bad flags and arguments: one line on stderr naming the problem, exit 2, nothing sent', async () => {
    const runs = await Promise.all([
      cli(['rotate', sids[0]!, '--folow']),
      cli(['status', 'not-a-uuid']),
      cli(['list', '--status', 'finished']),
      cli(['rotate', 'AC123']),
      cli(['batch', 'start', '--reason', 'x', '--canary', '1', '--step', '50', '--bake-seconds', '0', '--max-failure-rate', '0']),
      cli(['rotate', sids[0]!], { ROTATOR_URL: url }),
    ]);
    const messages = runs.map((r) => {
      expect(r.code, r.stderr).toBe(EXIT.usage);
      return oneErrorLine(r);
    });
    expect(messages[0]).toMatch(/unknown option '--folow'.*--follow/);
    expect(messages[1]).toMatch(/"not-a-uuid" is not a rotation id/);
    expect(messages[2]).toMatch(/'finished' is invalid.*pending, running/);
    expect(messages[3]).toMatch(/"AC123" is not an account SID/);
    expect(messages[4]).toMatch(/choose what to rotate: --all, --label, --account or --credential/);
    expect(messages[5]).toMatch(/no API token: set ROTATOR_TOKEN/);
  });

  it.concurrent('an unreachable API, a refused token and an unknown rotation: one line each, exits 3, 4 and 5; the token is never printed', async () => {
    const closed = await freePort();
    const bad = mintToken('nobody', 'admin').token;
    const [down, refused, missing, viewer] = await Promise.all([
      cli(['list'], { ROTATOR_URL: `http://127.0.0.1:${closed}`, ROTATOR_TOKEN: h.tokens.admin }),
      cli(['accounts'], { ROTATOR_URL: url, ROTATOR_TOKEN: bad }),
      cli(['status', '01900000-0000-7000-8000-000000000000']),
      cli(['rotate', sids[4]!], { ROTATOR_URL: url, ROTATOR_TOKEN: h.tokens.viewer }),
    ]);
    expect(down.code).toBe(EXIT.unreachable);
    expect(oneErrorLine(down)).toBe(`rotator: cannot reach the Rotator API at http://127.0.0.1:${closed}: connection refused (is the API running, and is the port right?)`);
    expect(refused.code).toBe(EXIT.auth);
    expect(oneErrorLine(refused)).toMatch(/\(token from ROTATOR_TOKEN\)$/);
    expect(missing.code).toBe(EXIT.notFound);
    expect(oneErrorLine(missing)).toMatch(/no rotation 01900000-0000-7000-8000-000000000000 \[rotation_not_found\]/);
    expect(viewer.code).toBe(EXIT.auth);
    for (const r of [down, refused, missing, viewer]) for (const t of [bad, h.tokens.admin, h.tokens.viewer]) expect(r.stdout + r.stderr).not.toContain(t);
  });

  it.concurrent('reads URL and token from a config file only when its mode is 0600, and a token from standard input', async () => {
    // A home of its own: the other tests run meanwhile, and a config file open to others stops every command.
    const own = await mkdtemp(join(tmpdir(), 'rotator-cli-home-'));
    const env = { HOME: own, XDG_CONFIG_HOME: join(own, '.config') };
    const dir = join(own, '.config', 'rotator');
    await mkdir(dir, { recursive: true });
    const file = join(dir, 'config.json');
    await writeFile(file, JSON.stringify({ url, token: h.tokens.viewer }));
    await chmod(file, 0o644);
    const open = await cli(['accounts'], env);
    expect(open.code).toBe(EXIT.usage);
    expect(oneErrorLine(open)).toBe(`rotator: config file ${file} is open to other users (mode 0644); it holds a token, so it must be mode 0600: chmod 600 ${file}`);
    await chmod(file, 0o600);
    const [fromFile, fromStdin] = await Promise.all([cli(['accounts', '--json'], env), cli(['--token-file', '-', '--url', url, 'accounts', '--json'], env, `${h.tokens.viewer}\n`)]);
    await rm(own, { recursive: true, force: true });
    for (const r of [fromFile, fromStdin]) {
      expect(r.code, r.stderr).toBe(EXIT.ok);
      expect(JSON.parse(r.stdout)).toMatchObject({ items: expect.arrayContaining([expect.objectContaining({ accountSid: sids[0] })]) });
    }
  });

  it.concurrent('batch start --follow runs the batch to completion, one line per batch event off a terminal, exit 0', async () => {
    const r = await cli(['batch', 'start', '--account', sids[3]!, '--account', sids[4]!, '--reason', 'cli batch', '--canary', '1', '--step', '50', '--bake-seconds', '0', '--max-failure-rate', '0.5', '--follow']);
    expect(r.code, r.stdout + r.stderr).toBe(EXIT.ok);
    expect(r.stdout).toMatch(/^batch [0-9a-f-]{36}: \w+, 2 credentials in 2 waves\n/);
    expect(r.stdout).toMatch(/wave-started \(wave 1\)/);
    expect(r.stdout).toMatch(/batch [0-9a-f-]{36} completed: 2 succeeded, 0 failed, 0 cancelled, 0 skipped of 2\n$/);
  });

  it.concurrent('compliance as CSV, the audit chain through the API and from a file (exit 1 when altered); through bin/rotator.js: a minted token, and shell completion', async () => {
    const exported = join(home, 'audit-export.jsonl');
    const [csv, audit, minted, completion] = await Promise.all([cli(['compliance', '--csv']), cli(['audit', 'verify', '--save', exported]), cli(['token', 'mint', 'ci', 'operator', '--json'], {}, undefined, BIN), cli(['completion', 'bash'], {}, undefined, BIN)]);
    for (const r of [csv, audit, minted, completion]) expect(r.code, r.stderr).toBe(EXIT.ok);
    const expected = await (await fetch(`${url}/v1/compliance`, { headers: { ...bearer(h.tokens.admin), accept: 'text/csv' } })).text();
    expect(csv.stdout.split('\n')[0]).toBe(expected.split('\n')[0]);
    expect(audit.stdout).toMatch(/^chain intact: \d+ entries \(head [0-9a-f]{64}\)\n$/);
    // The saved export checks offline; one entry altered in it breaks the chain: exit 1.
    const lines = (await readFile(exported, 'utf8')).trimEnd().split('\n');
    const entry = JSON.parse(lines[0]!) as { detail?: string };
    lines[0] = JSON.stringify({ ...entry, detail: `${entry.detail ?? ''} (altered)` });
    const tampered = join(home, 'audit-tampered.jsonl');
    await writeFile(tampered, `${lines.join('\n')}\n`);
    const [offline, broken] = await Promise.all([cli(['audit', 'verify', '--file', exported], {}), cli(['audit', 'verify', '--file', tampered], {})]);
    expect(offline.code, offline.stderr).toBe(EXIT.ok);
    expect(offline.stdout).toBe(audit.stdout);
    expect(broken.code, broken.stdout + broken.stderr).toBe(EXIT.failed);
    expect(broken.stdout).toMatch(/^chain BROKEN after 0 good entries: /);
    const token = JSON.parse(minted.stdout) as { name: string; role: string; token: string; entry: string };
    expect(token).toMatchObject({ name: 'ci', role: 'operator' });
    expect(token.entry).toMatch(/^ci:operator:[0-9a-f]{64}$/);
    // The script completes as bash runs it: commands, subcommands, and a flag's choices.
    const complete = async (words: string[]): Promise<string[]> => {
      const script = `${completion.stdout}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _rotator_completion; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const { stdout } = await promisify(execFile)('bash', ['-c', script]);
      return stdout.split('\n').filter(Boolean);
    };
    expect(await complete(['rotator', 'ba'])).toEqual(['batch']);
    expect(await complete(['rotator', 'batch', 'pa'])).toEqual(['pause']);
    expect(await complete(['rotator', 'list', '--status', 'r'])).toEqual(['running', 'rolled_back']);
    expect(await complete(['rotator', 'rotate', 'AC1', '--fo'])).toEqual(['--follow']);
  });

  it('--help works on every command, on stdout, exit 0', async () => {
    // In this process (run() is what the entry point calls): some 25 more processes would only repeat commander.
    const { buildProgram, run } = await import('../../src/cli/rotator/program.ts');
    const deps = { env: {}, readStdin: () => '', signal: new AbortController().signal, version: 'test' };
    const { program } = buildProgram(deps);
    const paths = (cmd: typeof program, path: string[]): string[][] => cmd.commands.filter((c) => c.name() !== 'help').flatMap((c) => [[...path, c.name()], ...paths(c, [...path, c.name()])]);
    const all = paths(program, []);
    expect(all.length).toBeGreaterThan(20);
    for (const p of [[], ...all]) {
      let out = '';
      let err = '';
      const code = await run([...p, '--help'], { ...deps, writeOut: (t) => (out += t), writeErr: (t) => (err += t) });
      expect(code, err).toBe(EXIT.ok);
      expect(out).toMatch(new RegExp(`^Usage: rotator ${p.length ? `${p.join(' ')} ` : ''}`));
    }
  });
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}
