import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { canonicalJson } from '../state/audit.ts';

/**
 * `Idempotency-Key` for POST /v1/rotations: the first request with a key runs; a repeat with the
 * same key and the same body gets the first answer again (same status, same rotation); the same
 * key with another body is refused. Keys are scoped per principal (two clients may pick the same
 * key) and kept for the configured TTL (24 h by default). Only a hash of the key is stored.
 */
export const IDEMPOTENCY_KEY = /^[\x20-\x7e]{1,255}$/;

export interface StoredAnswer {
  status: number;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
}

export type Claim = { kind: 'new' } | { kind: 'replay'; answer: StoredAnswer } | { kind: 'mismatch' } | { kind: 'in_progress' };

interface Stored {
  f: string;
  a?: StoredAnswer;
}

/** A request in progress holds its key this long at most, so a crash mid-request does not lock the key for a day. */
const PENDING_TTL_SECONDS = 60;

export class IdempotencyStore {
  constructor(
    private readonly redis: Redis,
    private readonly keyOf: (scopedHash: string) => string,
    private readonly ttlSeconds: number,
  ) {}

  static fingerprint(route: string, body: unknown): string {
    return createHash('sha256').update(route).update('\0').update(canonicalJson(body ?? null)).digest('hex');
  }

  #key(scope: string, key: string): string {
    return this.keyOf(`${scope}:${createHash('sha256').update(key, 'utf8').digest('hex')}`);
  }

  async claim(scope: string, key: string, fingerprint: string): Promise<Claim> {
    const k = this.#key(scope, key);
    const pending: Stored = { f: fingerprint };
    if ((await this.redis.set(k, JSON.stringify(pending), 'EX', PENDING_TTL_SECONDS, 'NX')) === 'OK') return { kind: 'new' };
    const raw = await this.redis.get(k);
    if (!raw) return this.claim(scope, key, fingerprint);
    const stored = JSON.parse(raw) as Stored;
    if (stored.f !== fingerprint) return { kind: 'mismatch' };
    return stored.a ? { kind: 'replay', answer: stored.a } : { kind: 'in_progress' };
  }

  async complete(scope: string, key: string, fingerprint: string, answer: StoredAnswer): Promise<void> {
    const stored: Stored = { f: fingerprint, a: answer };
    await this.redis.set(this.#key(scope, key), JSON.stringify(stored), 'EX', this.ttlSeconds);
  }

  /** The request failed before it had an answer worth repeating: let the client try again. */
  async release(scope: string, key: string): Promise<void> {
    await this.redis.del(this.#key(scope, key));
  }
}
