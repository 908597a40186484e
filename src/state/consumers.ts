import type { Redis } from 'ioredis';
import { isLive, type ConsumerReport } from '../domain/consumers.ts';

/**
 * Which key each consumer of a managed credential reports (POST /v1/consumers/heartbeat), in Redis
 * so every API and worker process, and a worker restarted mid-wait, see the same. One hash per
 * subaccount, field `<credential>/<consumer>` (neither name may hold a `/`), value
 * `{"k": keySid, "t": lastSeen ms, "by": token name}`. The hash expires when no consumer of the
 * subaccount has reported for the expiry; single stale fields are dropped when read.
 */
export class ConsumerRegistry {
  readonly #redis: Redis;
  readonly #key: (accountSid: string) => string;
  readonly expiryMs: number;
  readonly #maxPerAccount: number;

  constructor(redis: Redis, opts: { prefix: string; expiryMs: number; maxPerAccount?: number }) {
    this.#redis = redis;
    this.#key = (sid) => `${opts.prefix}:consumers:${sid}`;
    this.expiryMs = opts.expiryMs;
    this.#maxPerAccount = opts.maxPerAccount ?? 10_000;
  }

  /**
   * Record a heartbeat; answers the key the consumer reported before (undefined for a new one), so
   * the caller can wake a rotation waiting for it, or `full` when the subaccount already has as many
   * consumers as allowed (a token minting names in a loop must not grow Redis without bound).
   */
  async report(r: Omit<ConsumerReport, 'lastSeen'> & { accountSid: string }, now: number): Promise<{ previousKeySid: string | undefined } | 'full'> {
    const key = this.#key(r.accountSid);
    const field = `${r.credential}/${r.consumer}`;
    const [[, prev], [, count]] = (await this.#redis.multi().hget(key, field).hlen(key).exec()) as [[unknown, string | null], [unknown, number]];
    if (prev === null && count >= this.#maxPerAccount) {
      // Room may be held by consumers that stopped reporting: drop those, then look again.
      await this.#prune(r.accountSid, now);
      if ((await this.#redis.hlen(key)) >= this.#maxPerAccount) return 'full';
    }
    await this.#redis.multi().hset(key, field, JSON.stringify({ k: r.keySid, t: now, by: r.by })).pexpire(key, this.expiryMs).exec();
    const before = prev ? (JSON.parse(prev) as { k: string; t: number }) : undefined;
    return { previousKeySid: before && isLive({ lastSeen: before.t }, now, this.expiryMs) ? before.k : undefined };
  }

  /** The live consumers of every credential of the subaccount, by credential then consumer name. */
  async list(accountSid: string, now: number): Promise<ConsumerReport[]> {
    const live = (await this.#all(accountSid)).filter((r) => isLive(r, now, this.expiryMs));
    return live.sort((a, b) => a.credential.localeCompare(b.credential) || a.consumer.localeCompare(b.consumer));
  }

  async #all(accountSid: string): Promise<ConsumerReport[]> {
    const all = await this.#redis.hgetall(this.#key(accountSid));
    return Object.entries(all).map(([field, value]) => {
      const slash = field.indexOf('/');
      const v = JSON.parse(value) as { k: string; t: number; by: string };
      return { credential: field.slice(0, slash), consumer: field.slice(slash + 1), keySid: v.k, lastSeen: v.t, by: v.by };
    });
  }

  /**
   * Drop the fields of consumers that stopped reporting (only when the hash is full: reads just
   * skip them, and the hash expires with its last consumer). A consumer that reported again
   * between the read and the delete loses that one report; its next heartbeat restores it.
   */
  async #prune(accountSid: string, now: number): Promise<void> {
    const stale = (await this.#all(accountSid)).filter((r) => !isLive(r, now, this.expiryMs)).map((r) => `${r.credential}/${r.consumer}`);
    if (stale.length) await this.#redis.hdel(this.#key(accountSid), ...stale);
  }

  async forCredential(accountSid: string, credential: string, now: number): Promise<ConsumerReport[]> {
    return (await this.list(accountSid, now)).filter((c) => c.credential === credential);
  }
}
