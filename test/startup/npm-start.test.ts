import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, it, type ExpectStatic } from 'vitest';
import { startTwilioEmulator, type TwilioEmulator } from '../emulators/twilio/server.ts';
import { spawnRotator, type RotatorProcess } from '../helpers/processes.ts';
import { LogCapture } from '../helpers/stack.ts';
import { mintToken, parseApiTokens } from '../../src/api/tokens.ts';
import { lines, processAlive, redisServersMentioning, runTs, waitUntil } from './support.ts';

/**
 * `npm start` as a new user runs it, as real processes: each data directory gets its own Redis,
 * a killed process leaves no redis-server behind, start-up ends with one summary line — or stops
 * with one line that names the fix. Issue 12, items 8, 13, 14, 17.
 */
let emu: TwilioEmulator;
const root = mkdtempSync(join(tmpdir(), 'rotator-start-'));
const running: RotatorProcess[] = [];

beforeAll(async () => {
  emu = await startTwilioEmulator({ subaccounts: 2 });
});
afterAll(async () => {
  for (const p of running) await p.stop();
  await emu?.close();
  rmSync(root, { recursive: true, force: true });
});

function baseEnv(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: '0',
    TWILIO_ACCOUNT_SID: emu.parent.accountSid,
    TWILIO_AUTH_TOKEN: emu.parent.authToken,
    TWILIO_BASE_URL: emu.url,
    DRAIN_SECONDS: '0',
    ACCOUNT_SYNC_SECONDS: '0',
    ...extra,
  };
}

interface Started {
  proc: RotatorProcess;
  logs: LogCapture;
  summary: { mode: string; store: string; parent: string; drainSeconds: number; redis: string; redisEmbedded: boolean; apiTokens: number; api: string };
  redisPid: number;
}

async function startAll(expect: ExpectStatic, dataDir: string, extra: Record<string, string> = {}): Promise<Started> {
  const logs = new LogCapture();
  const proc = spawnRotator('all', baseEnv(dataDir, extra), logs);
  running.push(proc);
  await waitUntil(`npm start in ${dataDir} to finish starting`, () => /rotator started/.test(logs.text()) || proc.child.exitCode !== null, 90_000);
  expect(proc.child.exitCode, logs.text()).toBeNull();
  const line = logs.text().split('\n').find((l) => l.includes('rotator started'))!;
  const summary = line.startsWith('{') ? (JSON.parse(line) as { startup: Started['summary'] }).startup : (undefined as never);
  const instance = JSON.parse(readFileSync(join(dataDir, 'redis', 'instance.json'), 'utf8')) as { redisPid: number };
  return { proc, logs, summary, redisPid: instance.redisPid };
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

// Every test in this file runs its own processes on its own data directory (or none), and most of
// their time is process start-up and bounded waits: the three suites run concurrently.
describe.concurrent('npm start on the embedded defaults', () => {
  it('two data directories get two Redis servers; a SIGKILLed process leaves none; audit:verify finds each through its data directory', async ({ expect }) => {
    const dirA = join(root, 'a');
    const dirB = join(root, 'b');
    const admin = mintToken('ops', 'admin');
    const a = await startAll(expect, dirA, { API_TOKENS: admin.entry });
    const b = await startAll(expect, dirB);

    // Two servers, each in its own data directory.
    expect(a.redisPid).not.toBe(b.redisPid);
    expect(processAlive(a.redisPid) && processAlive(b.redisPid)).toBe(true);
    expect(a.summary.redis).toBe(`unix:${join(dirA, 'redis', 'redis.sock')}`);
    expect(b.summary.redis).toBe(`unix:${join(dirB, 'redis', 'redis.sock')}`);
    expect(redisServersMentioning(join(dirA, 'redis'))).toEqual([a.redisPid]);

    // The summary line: store, parent, drain, Redis (no password), tokens, mode.
    expect(a.summary).toMatchObject({ mode: 'all', store: `file ${join(dirA, 'secrets')}`, parent: emu.parent.accountSid, drainSeconds: 0, redisEmbedded: true, apiTokens: 1 });
    const summaryLine = a.logs.text().split('\n').find((l) => l.includes('rotator started'))!;
    expect(JSON.parse(summaryLine).msg).toBe(
      `rotator started: mode all, store file ${join(dirA, 'secrets')}, parent ${emu.parent.accountSid}, drain 0 s, redis unix:${join(dirA, 'redis', 'redis.sock')} (embedded), 1 API token, API ${a.summary.api}, worker concurrency 10`,
    );
    const password = readFileSync(join(dirA, 'redis', 'redis.password'), 'utf8').trim();
    expect(a.logs.text()).not.toContain(password);

    // A third process on a's data directory is refused, in one line, and a keeps its Redis.
    const third = await runTs('src/main.ts', ['all'], baseEnv(dirA));
    expect(third.code).toBe(1);
    expect(lines(third.stderr)).toEqual([expect.stringMatching(/is in use by another Rotator process \(pid \d+, its redis-server at unix:.*\): stop it, give this process another DATA_DIR, or run a Redis of your own and set REDIS_URL in both$/)]);
    expect(processAlive(a.redisPid)).toBe(true);

    // Something for the audit chain, then audit:verify with nothing but DATA_DIR, while a runs.
    const res = await fetch(`${a.summary.api}/v1/rotations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ accountSid: emu.subaccounts[0]!.sid, reason: 'audit marker' }),
    });
    expect(res.status).toBe(202);
    const redisA = new Redis(`${join(dirA, 'redis', 'redis.sock')}?password=${password}`);
    await waitUntil('an audit entry', async () => (await redisA.keys('*audit*')).length > 0);
    redisA.disconnect();
    const verifyRunning = await runTs('src/cli/audit-verify.ts', [], { DATA_DIR: dirA });
    expect(verifyRunning.code, verifyRunning.stdout + verifyRunning.stderr).toBe(0);
    expect(verifyRunning.stdout).toMatch(/chain intact: [1-9]\d* entries/);
    expect(verifyRunning.stderr).toContain('(running, unix:');

    // SIGKILL: no orphan redis-server.
    a.proc.child.kill('SIGKILL');
    await a.proc.exited;
    await waitUntil("a's redis-server to stop with its parent", () => !processAlive(a.redisPid), 15_000);
    expect(processAlive(b.redisPid)).toBe(true);

    // a is gone: audit:verify starts its Redis on the data for the check, and stops it again.
    const verifyStopped = await runTs('src/cli/audit-verify.ts', [], { DATA_DIR: dirA });
    expect(verifyStopped.code, verifyStopped.stdout + verifyStopped.stderr).toBe(0);
    expect(verifyStopped.stdout).toMatch(/chain intact: [1-9]\d* entries/);
    expect(verifyStopped.stderr).toContain('started for this check');
    expect(redisServersMentioning(join(dirA, 'redis'))).toEqual([]);

    // b's redis-server stopping under it makes b exit with one line, not hang on reconnects.
    process.kill(b.redisPid, 'SIGKILL');
    expect((await b.proc.exited).code).toBe(1);
    expect(b.logs.text()).toMatch(/the embedded redis-server stopped unexpectedly \(see .*redis\.log\): rotator exits; start it again/);
  }, 240_000);

  it('LOG_FORMAT=pretty prints lines a person reads, the summary as one sentence', async ({ expect }) => {
    const dir = join(root, 'pretty');
    const logs = new LogCapture();
    const proc = spawnRotator('all', baseEnv(dir, { LOG_FORMAT: 'pretty' }), logs);
    running.push(proc);
    await waitUntil('the pretty summary', () => /rotator started/.test(logs.text()) || proc.child.exitCode !== null, 90_000);
    await proc.stop();
    const out = lines(logs.text());
    expect(out.some((l) => l.startsWith('{'))).toBe(false);
    const summary = out.find((l) => l.includes('rotator started'))!;
    expect(summary).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: rotator started: mode all, store file .*, parent AC[0-9a-f]{32}, drain 0 s, redis unix:.*redis\.sock \(embedded\), 0 API tokens, API http:\/\/127\.0\.0\.1:\d+, worker concurrency 10$/);
  }, 120_000);
});

// Two of these wait out the 20 s start-up deadline of a store check that keeps failing: one after
// the other, those waits were most of this file's time.
describe.concurrent('start-up stops in one line that names the fix', () => {
  async function failedStart(expect: ExpectStatic, dir: string, env: Record<string, string>): Promise<{ line: string; stdout: string; ms: number }> {
    const r = await runTs('src/main.ts', ['all'], baseEnv(dir, env));
    expect(r.code, r.stdout + r.stderr).toBe(1);
    const errLines = lines(r.stderr);
    // One line in all (on stderr): no log lines before it, no stack trace, and the API never listened.
    expect(errLines, r.stderr).toHaveLength(1);
    expect(lines(r.stdout), r.stdout).toEqual([]);
    // Nothing left running for this data directory.
    expect(redisServersMentioning(dir)).toEqual([]);
    return { line: errLines[0]!, stdout: r.stdout, ms: r.ms };
  }

  it('the Twilio admin credential refused', async ({ expect }) => {
    const { line } = await failedStart(expect, join(root, 'bad-token'), { TWILIO_AUTH_TOKEN: 'f'.repeat(32) });
    expect(line).toBe(
      `Twilio refused the admin credential for parent account ${emu.parent.accountSid} (HTTP 401, Twilio error 20003): set TWILIO_AUTH_TOKEN to the parent account's current Auth Token (Console → Account → API keys & tokens)`,
    );
  }, 120_000);

  it('a Main key refused names the key variables', async ({ expect }) => {
    const { line } = await failedStart(expect, join(root, 'bad-key'), { TWILIO_AUTH_TOKEN: '', TWILIO_API_KEY: emu.parent.mainKey.sid, TWILIO_API_SECRET: 'wrong' });
    expect(line).toMatch(/^Twilio refused the admin credential .*: set TWILIO_API_KEY and TWILIO_API_SECRET to a Main key/);
  }, 120_000);

  it('Redis unreachable, after the bounded wait', async ({ expect }) => {
    const port = await freePort();
    const { line } = await failedStart(expect, join(root, 'no-redis'), { REDIS_URL: `redis://:hunter2@127.0.0.1:${port}`, REDIS_CONNECT_TIMEOUT_SECONDS: '2' });
    expect(line).toBe(
      `Redis at redis://127.0.0.1:${port} did not answer within 2 s (connect ECONNREFUSED 127.0.0.1:${port}): start it or correct REDIS_URL, or unset REDIS_URL to run an embedded redis-server (REDIS_CONNECT_TIMEOUT_SECONDS sets the wait)`,
    );
  }, 120_000);

  it('a store that cannot work: Vault unreachable', async ({ expect }) => {
    const port = await freePort();
    const { line } = await failedStart(expect, join(root, 'no-vault'), { SECRET_STORE: 'vault', VAULT_ADDR: `http://127.0.0.1:${port}`, VAULT_TOKEN: 'hvs.test' });
    expect(line).toMatch(new RegExp(`^secret store \\(vault http://127\\.0\\.0\\.1:${port} \\(mount secret\\)\\) failed its start-up check: .*check VAULT_ADDR`));
    expect(line).not.toContain('hvs.test');
  }, 120_000);

  it('a store that cannot work: the file store directory is not a directory', async ({ expect }) => {
    const { line } = await failedStart(expect, join(root, 'bad-file'), { FILE_STORE_PATH: '/etc/hostname/secrets' });
    expect(line).toMatch(/^secret store \(file \/etc\/hostname\/secrets\) failed its start-up check: .*set FILE_STORE_PATH to a writable directory$/);
  }, 120_000);
});

describe.concurrent('npm run mint-token', () => {
  const mint = (...args: string[]) => runTs('src/cli/mint-token.ts', args, {});

  it('requires a name and a role; anything wrong is one line and exit 2', async ({ expect }) => {
    const cases: Array<[string[], RegExp]> = [
      [[], /^mint-token: a token name and a role are required: npm run mint-token -- <name> <viewer\|operator\|admin\|consumer>$/],
      [['ci'], /^mint-token: a role is required: npm run mint-token -- <name> <viewer\|operator\|admin\|consumer>$/],
      [['ci bot', 'operator'], /^mint-token: token name "ci bot" is not allowed: use 1–64 letters, digits, _ \. or - \(/],
      [['ci:bot', 'operator'], /^mint-token: token name "ci:bot" is not allowed/],
      [['ci', 'root'], /^mint-token: role "root" is not one of viewer, operator, admin, consumer \(/],
    ];
    for (const [args, expected] of cases) {
      const r = await mint(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(lines(r.stderr), args.join(' ')).toEqual([expect.stringMatching(expected)]);
      expect(r.stdout).toBe('');
    }
    const ok = await mint('ci', 'viewer');
    expect(ok.code).toBe(0);
    const entry = lines(ok.stdout)[3]!;
    expect(parseApiTokens(entry)).toEqual([expect.objectContaining({ name: 'ci', role: 'viewer' })]);
  }, 120_000);
});
