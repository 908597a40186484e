import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { useEmbeddedRedis } from '../helpers/redis.ts';
import { AuditLog, combinedChainSource, exportedChainSource, redisChainSource, verifyAuditChain } from '../../src/state/audit.ts';
import { AuditRetention } from '../../src/service/audit-retention.ts';
import { Secret } from '../../src/domain/secret.ts';
import { createLogger } from '../../src/logger.ts';

const KEY = 'k'.repeat(40);
const log = createLogger('silent');

function runVerify(redisUrl: string, prefix: string, args: string[], key: string | null = KEY): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/audit-verify.ts', ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', REDIS_URL: redisUrl, REDIS_PREFIX: prefix, ...(key ? { AUDIT_CHECKPOINT_KEY: key } : {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => resolve({ code, out }));
  });
}

type Row = [string, string[]];

/** What `audit:verify -- --export <dir>` checks, in this process. */
function verifyWithExports(redis: Redis, prefix: string, files: string[]) {
  const lines = files.flatMap((f) => readFileSync(f, 'utf8').split('\n'));
  return verifyAuditChain(combinedChainSource(exportedChainSource(lines), redisChainSource(redis, prefix)), { checkpointKey: KEY });
}

/**
 * Issue 18, a bounded audit trail: entries past AUDIT_RETENTION_DAYS are exported (durably) and
 * trimmed behind a signed checkpoint; the export and the stream verify as one chain, and a
 * tampered export, a deleted checkpoint or a forged one are each reported.
 */
describe('audit retention: export, checkpoint, trim, verify', () => {
  const r = useEmbeddedRedis('audit-retention');
  let dir: string;
  let redis: Redis;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-audit-export-'));
    redis = r.connection();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A chain of `old` entries, then `recent` more: the retention clock is set so exactly the old ones are past it. */
  async function chain(prefix: string, old: number, recent: number): Promise<{ audit: AuditLog; nowMs: number; rows: () => Promise<Row[]> }> {
    const audit = new AuditLog(redis, prefix);
    for (let i = 0; i < old; i++) await audit.append({ kind: 'api', actor: 'alice', action: 'rotation.start', detail: `old ${i}` });
    // The next entry's stream time is the boundary: every older one is past a 1-day retention "now" one day later.
    const boundary = await audit.append({ kind: 'api', actor: 'alice', action: 'rotation.start', detail: 'first kept' });
    for (let i = 1; i < recent; i++) await audit.append({ kind: 'api', actor: 'bob', action: 'rotation.cancel', detail: `recent ${i}` });
    const boundaryMs = Number(boundary.id.split('-')[0]);
    // Old entries appended in the boundary's millisecond stay too (the cutoff is exclusive): tests count what is past it.
    return { audit, nowMs: boundaryMs + 86_400_000, rows: async () => (await redis.xrange(`${prefix}:audit`, '-', '+')) as Row[] };
  }

  const retention = (prefix: string, nowMs: number, exportTo: string, key = KEY, extra: { stdoutFd?: number; redis?: Redis } = {}) =>
    new AuditRetention({ redis: extra.redis ?? redis, prefix, log, cfg: { days: 1, exportTo, checkpointKey: new Secret(key), intervalMs: 3_600_000 }, now: () => nowMs, ...(extra.stdoutFd !== undefined ? { stdoutFd: extra.stdoutFd } : {}) });

  it('exports the old entries to a file, leaves a signed checkpoint, and the export plus the stream verify end to end', async () => {
    const prefix = 'ret1';
    const out = join(dir, 'ret1');
    const c = await chain(prefix, 20, 5);
    const before = await c.rows();
    const oldCount = before.filter(([id]) => Number(id.split('-')[0]) < c.nowMs - 86_400_000).length;
    expect(oldCount).toBeGreaterThan(0);

    const result = await retention(prefix, c.nowMs, out).trim();
    expect(result.trimmed).toBe(oldCount);
    const files = readdirSync(out);
    expect(files).toEqual([result.exports[0]]);
    const lines = readFileSync(join(out, files[0]!), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(oldCount);

    const after = await c.rows();
    expect(after).toHaveLength(before.length - oldCount + 1);
    const cp = JSON.parse(after.at(-1)![1][1]!);
    expect(cp).toMatchObject({ kind: 'checkpoint', action: 'audit.checkpoint', checkpoint: { trimmedThrough: before[oldCount - 1]![0], trimmedCount: oldCount, exportedTo: files[0] } });
    // The first entry kept links to the last one trimmed, which the checkpoint names.
    expect(after[0]![1][3]).toBe(cp.checkpoint.trimmedHash);

    // The stream alone verifies from the checkpoint; without the key it cannot be vouched for.
    expect(await verifyAuditChain(redisChainSource(redis, prefix), { checkpointKey: KEY })).toMatchObject({ ok: true, count: after.length, anchoredBy: result.checkpoints[0] });
    expect(await verifyAuditChain(redisChainSource(redis, prefix))).toMatchObject({ ok: false, problem: 'checkpoint-unverifiable' });
    // The export followed by the stream: one chain from its genesis, every entry once.
    expect(await verifyAuditChain(combinedChainSource(exportedChainSource(lines), redisChainSource(redis, prefix)), { checkpointKey: KEY })).toMatchObject({ ok: true, count: before.length + 1 });

    // The command: export + stream; the stream without the key.
    let v = await runVerify(r.url(), prefix, ['--export', out]);
    expect(v).toMatchObject({ code: 0, out: expect.stringContaining(`chain intact: ${before.length + 1} entries`) });
    v = await runVerify(r.url(), prefix, [], null);
    expect(v).toMatchObject({ code: 2, out: expect.stringMatching(/set AUDIT_CHECKPOINT_KEY/) });

    // Nothing past retention any more: a second run trims nothing.
    expect(await retention(prefix, c.nowMs, out).trim()).toMatchObject({ trimmed: 0 });
  }, 60_000);

  it('a crash between the export and the trim repeats harmlessly: a second export overlaps the first, and verification reads each entry once', async () => {
    const prefix = 'ret2';
    const out = join(dir, 'ret2');
    const c = await chain(prefix, 12, 3);
    const before = await c.rows();
    // The trim script never runs: the process "died" right after the export was made durable.
    const dying = new Proxy(redis, {
      get(target, prop, receiver) {
        if (prop === 'evalsha' || prop === 'eval') return () => Promise.reject(new Error('killed before the trim'));
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    await expect(retention(prefix, c.nowMs, out, KEY, { redis: dying }).trim()).rejects.toThrow(/killed before the trim/);
    expect(readdirSync(out)).toHaveLength(1);
    expect(await c.rows()).toHaveLength(before.length);
    // More entries went past retention meanwhile: the next run's export covers the first one's and more.
    const result = await retention(prefix, c.nowMs + 1, out).trim();
    expect(result.trimmed).toBeGreaterThan(0);
    expect(readdirSync(out).filter((f) => f.endsWith('.jsonl')).length).toBeGreaterThanOrEqual(1);
    const files = readdirSync(out).map((f) => join(out, f));
    expect(await verifyWithExports(redis, prefix, files)).toMatchObject({ ok: true, count: before.length + 1 });
  }, 60_000);

  it('exports to standard output (for a log shipper) with the log lines beside it, and that capture verifies', async () => {
    const prefix = 'ret3';
    const capture = join(dir, 'ret3-stdout.log');
    const c = await chain(prefix, 6, 2);
    const before = await c.rows();
    writeFileSync(capture, `${JSON.stringify({ level: 30, msg: 'a log line the shipper also collected' })}\n`);
    const fd = openSync(capture, 'a');
    try {
      const result = await retention(prefix, c.nowMs, '-', KEY, { stdoutFd: fd }).trim();
      expect(result.exports).toEqual(['stdout']);
    } finally {
      closeSync(fd);
    }
    expect(await verifyWithExports(redis, prefix, [capture])).toMatchObject({ ok: true, count: before.length + 1 });
  }, 60_000);

  describe('detects', () => {
    const prefix = 'ret4';
    let out: string;
    let file: string;
    let original: string;

    beforeAll(async () => {
      out = join(dir, 'ret4');
      const c = await chain(prefix, 10, 4);
      await retention(prefix, c.nowMs, out).trim();
      // The chain goes on after the checkpoint.
      for (let i = 0; i < 3; i++) await c.audit.append({ kind: 'api', actor: 'carol', action: 'rotation.retry' });
      file = join(out, readdirSync(out)[0]!);
      original = readFileSync(file, 'utf8');
      expect(await verifyWithExports(redis, prefix, [file])).toMatchObject({ ok: true });
    }, 60_000);

    it('a tampered export', async () => {
      const lines = original.trim().split('\n');
      const victim = JSON.parse(lines[4]!);
      lines[4] = JSON.stringify({ ...victim, actor: 'mallory' });
      writeFileSync(file, `${lines.join('\n')}\n`);
      const v = await runVerify(r.url(), prefix, ['--export', out]);
      expect(v).toMatchObject({ code: 1, out: expect.stringContaining(`modified at ${victim.id}: entry ${victim.id} was modified`) });
      writeFileSync(file, original);
      expect(await verifyWithExports(redis, prefix, [file])).toMatchObject({ ok: true });
    }, 60_000);

    it('a deleted checkpoint', async () => {
      const rows = (await redis.xrange(`${prefix}:audit`, '-', '+')) as Row[];
      const cp = rows.find(([, f]) => f[1]!.includes('"kind":"checkpoint"'))!;
      await redis.xdel(`${prefix}:audit`, cp[0]);
      try {
        const v = await runVerify(r.url(), prefix, []);
        expect(v).toMatchObject({ code: 1, out: expect.stringMatching(/first entry does not start the chain\): entries were deleted, and no checkpoint vouches for a trim \(or the checkpoint was deleted too\)/) });
        // With the export in front, the gap where the checkpoint was is a broken link.
        expect(await verifyWithExports(redis, prefix, [file])).toMatchObject({ ok: false, problem: 'deleted', message: expect.stringMatching(/broken link between/) });
      } finally {
        const m = redis.multi().del(`${prefix}:audit`);
        for (const [id, f] of rows) m.xadd(`${prefix}:audit`, id, ...f);
        await m.exec();
      }
      expect(await verifyAuditChain(redisChainSource(redis, prefix), { checkpointKey: KEY })).toMatchObject({ ok: true });
    }, 60_000);

    it('a forged checkpoint: someone with Redis access alone trims further and writes a checkpoint of their own', async () => {
      const before = (await redis.xrange(`${prefix}:audit`, '-', '+')) as Row[];
      const head = await redis.get(`${prefix}:audit:head`);
      // The forger runs the same code, without the real key.
      await retention(prefix, Date.now() + 2 * 86_400_000, join(dir, 'forger'), 'f'.repeat(40)).trim();
      try {
        const v = await runVerify(r.url(), prefix, []);
        expect(v).toMatchObject({ code: 1, out: expect.stringMatching(/checkpoint-forged at \S+: checkpoint \S+ is forged: its signature does not verify with AUDIT_CHECKPOINT_KEY/) });
      } finally {
        const m = redis.multi().del(`${prefix}:audit`);
        for (const [id, f] of before) m.xadd(`${prefix}:audit`, id, ...f);
        await m.set(`${prefix}:audit:head`, head!).exec();
      }
    }, 60_000);
  });

  it('verifies a live chain while entries are appended (the head is read before the walk)', async () => {
    const prefix = 'ret5';
    const audit = new AuditLog(redis, prefix);
    // Reading the head after the walk (the earlier code) took a live chain for a cut-short one in
    // about 2 of these 10 verifications on the development host.
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 600; i++) void audit.append({ kind: 'api', actor: 'x', action: 'a' });
      await audit.append({ kind: 'api', actor: 'x', action: 'a' });
      const appending = Promise.all(Array.from({ length: 600 }, () => audit.append({ kind: 'api', actor: 'y', action: 'b' })));
      const verdicts = await Promise.all([verifyAuditChain(redisChainSource(redis, prefix)), verifyAuditChain(redisChainSource(redis, prefix))]);
      await appending;
      for (const v of verdicts) expect(v).toMatchObject({ ok: true });
    }
  }, 60_000);
});
