import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { APPEND_HASHING, AuditLog, canonicalJson, chainHash, exportedChainSource, GENESIS, redisChainSource, verifyAuditChain } from '../../src/state/audit.ts';
import { bearer, startApiHarness, type ApiHarness } from './support.ts';

/** `npm run audit:verify` as a real child process against the test's Redis. */
function runVerify(redisUrl: string, prefix: string, args: string[] = []): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/audit-verify.ts', ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', REDIS_URL: redisUrl, REDIS_PREFIX: prefix },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => resolve({ code, out }));
  });
}

type Row = [string, string[]];

describe('audit trail', () => {
  let h: ApiHarness;
  let redis: Redis;
  let prefix: string;
  let streamKey: string;
  // A real subaccount of the parent: POST /v1/rotations refuses any other account.
  const sid = () => h.stack.emu.createSubaccount('audit test').sid;

  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'warn' });
    prefix = h.stack.cfg.redisPrefix;
    streamKey = `${prefix}:audit`;
    redis = new Redis(h.rt.redisUrl);
  });
  afterAll(async () => {
    redis?.disconnect();
    await h?.close();
  });

  const admin = () => bearer(h.tokens.admin);

  it('records who did what to which rotation, from where, with the outcome — refusals of known principals included', async () => {
    const account = sid();
    const started = await h.app.inject({ method: 'POST', url: '/v1/rotations', headers: { ...bearer(h.tokens.operator), 'x-forwarded-for': '203.0.113.9' }, payload: { accountSid: account, reason: 'leak' } });
    const id = started.json().id;
    await h.app.inject({ method: 'POST', url: `/v1/rotations/${id}/cancel`, headers: bearer(h.tokens.operator) });
    await h.app.inject({ method: 'POST', url: `/v1/rotations/${id}/retry`, headers: bearer(h.tokens.operator) });
    await h.app.inject({ method: 'POST', url: `/v1/rotations/${id}/rollback`, headers: bearer(h.tokens.viewer) });
    await h.app.inject({ method: 'POST', url: `/v1/rotations/${id}/cancel` });

    const res = await h.app.inject({ method: 'GET', url: `/v1/audit?rotationId=${id}`, headers: admin() });
    expect(res.statusCode).toBe(200);
    const items = res.json().items as Array<Record<string, unknown>>;
    // The anonymous cancel (401) is counted in a metric, not chained (next test).
    expect(items.map((e) => [e.action, e.actor, e.role ?? null, e.status])).toEqual([
      ['rotation.rollback', 'dash', 'viewer', 403],
      ['rotation.retry', 'ci', 'operator', 409],
      ['rotation.cancel', 'ci', 'operator', 200],
      ['rotation.start', 'ci', 'operator', 202],
    ]);
    const startEntry = items.at(-1)!;
    expect(startEntry).toMatchObject({ kind: 'api', rotationId: id, accountSid: account, ip: '127.0.0.1', requestId: started.headers['x-request-id'] });
    expect(startEntry.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(items[0]!.prev).toBe(items[1]!.hash);

    // Filters: by account, by time, and paging newest first.
    const byAccount = (await h.app.inject({ method: 'GET', url: `/v1/audit?accountSid=${account}`, headers: admin() })).json().items;
    expect(byAccount.length).toBe(3);
    const future = new Date(Date.now() + 60_000).toISOString();
    expect((await h.app.inject({ method: 'GET', url: `/v1/audit?since=${future}`, headers: admin() })).json().items).toEqual([]);
    const page1 = (await h.app.inject({ method: 'GET', url: `/v1/audit?rotationId=${id}&limit=2`, headers: admin() })).json();
    const page2 = (await h.app.inject({ method: 'GET', url: `/v1/audit?rotationId=${id}&limit=2&cursor=${page1.nextCursor}`, headers: admin() })).json();
    expect([...page1.items, ...page2.items].map((e: { id: string }) => e.id)).toEqual(items.slice(0, 4).map((e) => e.id));
    // Found by the fuzz suite: cursors Redis refuses in a range were a 500.
    expect((await h.app.inject({ method: 'GET', url: '/v1/audit?cursor=0-0', headers: admin() })).json()).toEqual({ items: [], nextCursor: null });
    const past64 = await h.app.inject({ method: 'GET', url: '/v1/audit?cursor=99999999999999999999-0', headers: admin() });
    expect(past64.statusCode).toBe(400);
    expect(past64.json().error.code).toBe('invalid_cursor');
  });

  it('does not grow the chain for requests without a valid credential: counts them in rotator_api_unauthenticated_total', async () => {
    const unauthenticated = async (): Promise<number> => {
      const text = (await h.app.inject({ method: 'GET', url: '/metrics' })).body;
      return [...text.matchAll(/^rotator_api_unauthenticated_total\{[^}]*status="401"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    };
    const before = { length: await redis.xlen(streamKey), counted: await unauthenticated() };
    const anonymous = [
      { method: 'POST' as const, url: '/v1/rotations', payload: { accountSid: sid() } },
      { method: 'POST' as const, url: '/v1/rotations', headers: bearer('rot_not-a-real-token'), payload: { accountSid: sid(), reason: 'x'.repeat(400) } },
      { method: 'POST' as const, url: `/v1/rotations/${randomUUID()}/cancel`, headers: bearer(await h.idp.sign({ sub: 'forged', groups: ['rotator-admins'] }, { key: 'rogue' })) },
      { method: 'POST' as const, url: `/v1/rotations/${randomUUID()}/retry`, headers: { authorization: 'Basic c2VjOnNlYw==' } },
    ];
    for (let i = 0; i < 50; i++) expect((await h.app.inject(anonymous[i % anonymous.length]!)).statusCode).toBe(401);
    expect(await redis.xlen(streamKey)).toBe(before.length);
    expect((await unauthenticated()) - before.counted).toBe(50);
    // A known principal's refusal is still chained.
    await h.app.inject({ method: 'POST', url: `/v1/rotations/${randomUUID()}/rollback`, headers: bearer(h.tokens.viewer) });
    expect(await redis.xlen(streamKey)).toBe(before.length + 1);
  });

  it('exports JSON lines that verify offline, and the chain in Redis verifies', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/v1/audit/export', headers: admin() });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/application\/x-ndjson/);
    const lines = res.body.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(5);
    expect(JSON.parse(lines[0]!).prev).toBe(GENESIS);
    expect(await verifyAuditChain(exportedChainSource(lines))).toMatchObject({ ok: true, count: lines.length });
    expect(await verifyAuditChain(redisChainSource(redis, prefix))).toMatchObject({ ok: true, count: lines.length });

    const path = join(h.stack.dir, 'export.jsonl');
    await writeFile(path, res.body);
    expect(await runVerify(h.rt.redisUrl, prefix, ['--file', path])).toMatchObject({ code: 0, out: expect.stringMatching(/chain intact/) });
  });

  it('chains appends from several processes (connections) correctly, losing none under contention', async () => {
    const before = await redis.xlen(streamKey);
    const conns = Array.from({ length: 8 }, () => new Redis(h.rt.redisUrl));
    // Half compare-and-append first (falling back to hashing in Redis when they keep losing), half hash in Redis at once.
    const logs = conns.map((c, i) => new AuditLog(c, prefix, { casAttempts: i % 2 ? 3 : 0 }));
    await Promise.all(logs.flatMap((log, i) => Array.from({ length: 40 }, (_, j) => log.append({ kind: 'rotation', actor: `worker-${i}`, action: 'step.completed', detail: `n${j} ü ✓` }))));
    for (const c of conns) c.disconnect();
    expect(await redis.xlen(streamKey)).toBe(before + 320);
    expect(await verifyAuditChain(redisChainSource(redis, prefix))).toMatchObject({ ok: true, count: before + 320 });
  });

  it('hashes in Lua exactly as node:crypto does (any text, any length)', async () => {
    const key = `${prefix}:lua-sha-check`;
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'grapheme', maxLength: 300 }), fc.string({ maxLength: 70 }), async (entry, head) => {
        await redis.del(key, `${key}:head`);
        if (head) await redis.set(`${key}:head`, head);
        const [, prev, hash] = (await redis.eval(APPEND_HASHING, 2, key, `${key}:head`, entry, GENESIS)) as [string, string, string];
        expect(prev).toBe(head || GENESIS);
        expect(hash).toBe(chainHash(prev, entry));
      }),
      { numRuns: 300 },
    );
    await redis.del(key, `${key}:head`);
  });

  it('never holds a secret or token', async () => {
    const all = ((await redis.xrange(streamKey, '-', '+')) as Row[]).map(([, f]) => f.join(' ')).join('\n');
    for (const secret of [...h.issued, ...h.stack.emu.issuedSecrets(), h.stack.emu.parent.authToken]) expect(all.includes(secret)).toBe(false);
  });

  describe('the verify command finds tampering', () => {
    const snapshot = async (): Promise<Row[]> => (await redis.xrange(streamKey, '-', '+')) as Row[];
    /** Rewrite the stream with the same ids (what an attacker with Redis access can do). */
    const rewrite = async (rows: Row[]) => {
      const m = redis.multi().del(streamKey);
      for (const [id, fields] of rows) m.xadd(streamKey, id, ...fields);
      await m.exec();
    };
    let original: Row[];
    let head: string | null;

    beforeAll(async () => {
      original = await snapshot();
      head = await redis.get(`${prefix}:audit:head`);
    });
    const restore = async () => {
      await rewrite(original);
      await redis.set(`${prefix}:audit:head`, head!);
    };

    it('reports an intact chain with its length', async () => {
      const r = await runVerify(h.rt.redisUrl, prefix);
      expect(r.code).toBe(0);
      expect(r.out).toContain(`chain intact: ${original.length} entries`);
    });

    it('detects a modified entry', async () => {
      const rows = original.map(([id, f]) => [id, [...f]] as Row);
      const victim = rows[3]!;
      const e = JSON.parse(victim[1][1]!);
      victim[1][1] = canonicalJson({ ...e, status: 200, actor: 'someone-else' });
      await rewrite(rows);
      const r = await runVerify(h.rt.redisUrl, prefix);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(new RegExp(`modified at ${victim[0]}`));
      await restore();
    });

    it('detects a modified entry whose hash was recomputed (the next link breaks)', async () => {
      const rows = original.map(([id, f]) => [id, [...f]] as Row);
      const [, f] = rows[2]!;
      const e = canonicalJson({ ...JSON.parse(f[1]!), action: 'rotation.start' });
      f[1] = e;
      f[5] = chainHash(f[3]!, e);
      await rewrite(rows);
      const r = await runVerify(h.rt.redisUrl, prefix);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(new RegExp(`deleted at ${rows[3]![0]}.*${rows[2]![0]} was rewritten`));
      await restore();
    });

    it('detects a deleted entry (XDEL), in the middle and at either end', async () => {
      await redis.xdel(streamKey, original[4]![0]);
      let r = await runVerify(h.rt.redisUrl, prefix);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(new RegExp(`deleted at ${original[5]![0]}: broken link between ${original[3]![0]} and ${original[5]![0]}`));
      await restore();

      await redis.xdel(streamKey, original[0]![0]);
      r = await runVerify(h.rt.redisUrl, prefix);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/the first entry does not start the chain/);
      await restore();

      await redis.xdel(streamKey, original.at(-1)![0]);
      r = await runVerify(h.rt.redisUrl, prefix);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/newest entries were deleted/);
      await restore();
    });

    it('detects reordered entries', async () => {
      const rows = original.map(([id, f]) => [id, [...f]] as Row);
      const a = rows[6]![1];
      rows[6]![1] = rows[7]![1];
      rows[7]![1] = a;
      await rewrite(rows);
      const r = await runVerify(h.rt.redisUrl, prefix);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/reordered/);
      await restore();
      expect((await runVerify(h.rt.redisUrl, prefix)).code).toBe(0);
    });

    it('--expect-head: the chain must still contain the head hash the operator kept; a cut-short or re-hashed export fails', async () => {
      for (let i = 0; i < 5; i++) await h.app.inject({ method: 'POST', url: `/v1/rotations/${randomUUID()}/cancel`, headers: bearer(h.tokens.operator) });
      const printed = await runVerify(h.rt.redisUrl, prefix);
      const kept = /\(head ([0-9a-f]{64})\)/.exec(printed.out)![1]!;
      const exportTo = async (name: string, lines: string[]) => {
        const path = join(h.stack.dir, name);
        await writeFile(path, `${lines.join('\n')}\n`);
        return path;
      };
      const exported = async () => (await h.app.inject({ method: 'GET', url: '/v1/audit/export', headers: admin() })).body.trim().split('\n');
      const lines = await exported();
      const verify = (l: string[], keptHead?: string) => verifyAuditChain(exportedChainSource(l), keptHead ? { keptHead } : {});
      expect(await verify(lines, kept)).toMatchObject({ ok: true, kept: { newer: 0 } });
      expect(await verifyAuditChain(redisChainSource(redis, prefix), { keptHead: kept })).toMatchObject({ ok: true });
      expect(await verifyAuditChain(redisChainSource(redis, prefix), { keptHead: 'f'.repeat(64) })).toMatchObject({ ok: false, problem: 'kept-head-missing' });

      // Cut short: consistent with itself, so only the kept head tells.
      expect(await verify(lines.slice(0, -3))).toMatchObject({ ok: true });
      const cut = await exportTo('cut.jsonl', lines.slice(0, -3));
      expect(await runVerify(h.rt.redisUrl, prefix, ['--file', cut, '--expect-head', kept])).toMatchObject({ code: 1, out: expect.stringMatching(/kept-head-missing.*cut short .*or rewritten/) });

      // Re-hashed: one entry changed and every hash after it recomputed.
      let prev = '';
      const rehashed = lines.map((line, i) => {
        const { id, prev: p, hash, ...body } = JSON.parse(line) as { id: string; prev: string; hash: string; actor: string };
        if (i < 2) return ((prev = hash), line);
        if (i === 2) body.actor = 'someone-else';
        const h2 = chainHash(i === 2 ? p : prev, canonicalJson(body));
        const out = JSON.stringify({ ...body, id, prev: i === 2 ? p : prev, hash: h2 });
        prev = h2;
        return out;
      });
      expect(await verify(rehashed)).toMatchObject({ ok: true });
      expect(await verify(rehashed, kept)).toMatchObject({ ok: false, problem: 'kept-head-missing' });

      // The chain grows after the head was kept: still verifies, saying how much is newer.
      await h.app.inject({ method: 'POST', url: `/v1/rotations/${randomUUID()}/cancel`, headers: bearer(h.tokens.operator) });
      const later = await exportTo('later.jsonl', await exported());
      expect(await runVerify(h.rt.redisUrl, prefix, ['--file', later, '--expect-head', kept])).toMatchObject({ code: 0, out: expect.stringMatching(/followed by 1 newer entries/) });
      expect((await runVerify(h.rt.redisUrl, prefix, ['--expect-head', 'not-a-hash'])).code).toBe(2);
      expect(await readFile(later, 'utf8')).not.toMatch(/rot_/);
    });
  });
});
