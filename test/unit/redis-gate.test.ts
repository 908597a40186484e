import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/state/redis.ts';
import { RedisConcurrencyGate } from '../../src/twilio/redis-gate.ts';
import { waitFor } from '../helpers/stack.ts';

describe('RedisConcurrencyGate: one cap across processes', () => {
  let dir: string;
  let server: EmbeddedRedis;
  const clients: Redis[] = [];
  const client = () => {
    const r = new Redis(server.url);
    clients.push(r);
    return r;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-gate-'));
    server = await startEmbeddedRedis({ dir, persist: false });
  });
  afterAll(async () => {
    clients.forEach((c) => c.disconnect());
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('never lets more than the limit run at once across three gates, and serves every request', async () => {
    const gates = [0, 1, 2].map(() => new RedisConcurrencyGate(client(), { key: 'cap:a', limit: 5, maxHandoffs: 3 }));
    let active = 0;
    let peak = 0;
    const perGate = [0, 0, 0];
    await Promise.all(
      Array.from({ length: 150 }, async (_, i) => {
        const g = i % 3;
        const release = await gates[g]!.acquire();
        active++;
        peak = Math.max(peak, active);
        await new Promise((r) => setTimeout(r, 2 + (i % 4)));
        active--;
        perGate[g]!++;
        release();
      }),
    );
    expect(peak).toBeLessThanOrEqual(5);
    expect(peak).toBeGreaterThanOrEqual(4);
    expect(perGate).toEqual([50, 50, 50]);
    await Promise.all(gates.map((g) => g.close()));
    expect(await client().zcard('cap:a')).toBe(0);
  });

  it('does not starve a process while another keeps every slot busy', async () => {
    const busy = new RedisConcurrencyGate(client(), { key: 'cap:c', limit: 4 });
    const quiet = new RedisConcurrencyGate(client(), { key: 'cap:c', limit: 4 });
    const use = async (g: RedisConcurrencyGate): Promise<void> => {
      const release = await g.acquire();
      await new Promise((r) => setTimeout(r, 5));
      release();
    };
    // The busy process keeps asking (16 lanes, more than the 4 slots) until the quiet one is
    // through, or it has made CAP requests: a starved quiet process waits for all of them.
    const CAP = 5_000;
    let busyDone = 0;
    let quietThrough = false;
    const lane = async (): Promise<void> => {
      while (!quietThrough && busyDone < CAP) {
        await use(busy);
        busyDone++;
      }
    };
    const flood = Promise.all(Array.from({ length: 16 }, lane));
    // The quiet process asks once the busy one keeps every slot busy (not after a guessed 20 ms,
    // by which a slow machine may not have granted the busy one anything yet).
    const watcher = client();
    await waitFor('the busy process to hold every slot', async () => busyDone > 0 && (await watcher.zcard('cap:c')) === 4, 60_000, 2);
    const before = busyDone;
    await Promise.all(Array.from({ length: 20 }, () => use(quiet)));
    quietThrough = true;
    // Its 20 turns came while the busy process still had thousands of requests to make; the
    // busy one's count meanwhile is a figure of how fair the sharing was, not a time.
    const meanwhile = busyDone - before;
    expect(busyDone).toBeLessThan(CAP);
    expect(meanwhile).toBeLessThan((CAP - before) / 2);
    await flood;
    await Promise.all([busy.close(), quiet.close()]);
  });

  it('reclaims the slots of a process that died holding them once their lease expires', async () => {
    const deadClient = new Redis(server.url);
    const dead = new RedisConcurrencyGate(deadClient, { key: 'cap:b', limit: 2, leaseMs: 400 });
    await dead.acquire();
    await dead.acquire();
    // The process dies: its connection is gone, nothing renews or releases its slots.
    deadClient.disconnect();
    // Judged on Redis's clock, the one leases are kept on: a slot is granted no earlier than the
    // first of the dead process's leases ends (whenever this process got round to asking), and
    // soon after.
    const r = client();
    const leaseEnds = Math.min(...(await r.zrange('cap:b', '0', '-1', 'WITHSCORES')).filter((_, i) => i % 2 === 1).map(Number));
    const survivor = new RedisConcurrencyGate(client(), { key: 'cap:b', limit: 2, leaseMs: 400 });
    const release = await survivor.acquire();
    const [sec, usec] = await r.time();
    const grantedAt = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    expect(grantedAt).toBeGreaterThanOrEqual(leaseEnds);
    expect(grantedAt - leaseEnds).toBeLessThan(5_000);
    release();
    await survivor.close();
    await dead.close();
  });

  it('keeps a released slot briefly for the next local request, and hands it over when another process waits', async () => {
    const r = client();
    const alone = new RedisConcurrencyGate(r, { key: 'cap:d', limit: 2, contentionCheckMs: 20 });
    const zrems = async (): Promise<number> => Number(/cmdstat_zrem:calls=(\d+)/.exec(await r.info('commandstats'))?.[1] ?? 0);
    const before = await zrems();
    for (let i = 0; i < 50; i++) (await alone.acquire())();
    // One process alone: the slot went back and forth between its own requests, never to Redis.
    expect((await zrems()) - before).toBe(0);

    // Another process wants slots while the first keeps both busy: it gets one.
    let hogCount = 0;
    const hog = Promise.all(
      Array.from({ length: 400 }, async () => {
        const release = await alone.acquire();
        await new Promise((res) => setTimeout(res, 2));
        release();
        hogCount++;
      }),
    );
    const other = new RedisConcurrencyGate(client(), { key: 'cap:d', limit: 2, contentionCheckMs: 20 });
    (await other.acquire())();
    // Measured in the first process's progress, not in milliseconds: a process that never handed
    // a slot over would make the other wait until all 400 requests were through.
    expect(hogCount).toBeLessThan(200);
    await hog;
    await Promise.all([alone.close(), other.close()]);
    expect(await r.zcard('cap:d')).toBe(0);
  });
});
