import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Principal, Role } from '../api/tokens.ts';

/** What a session holds: who signed in and until when. Never the token that was exchanged for it. */
export interface SessionRecord {
  name: string;
  role: Role;
  createdAt: number;
  expiresAt: number;
}

const ID = /^[A-Za-z0-9_-]{43}$/;

/** The Redis key's part: a session id is a bearer credential, so Redis holds only its hash. */
function idHash(id: string): string {
  return createHash('sha256').update(id, 'utf8').digest('base64url');
}

/**
 * Dashboard sessions (issue 14): a random 256-bit id in an httpOnly cookie, a record in Redis under
 * the id's SHA-256 with a TTL at its expiry. The CSRF token is derived from the id (an HMAC keyed by
 * it), so it needs no storage, and neither it nor the id can be read back from Redis.
 */
export class SessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly key: (idHash: string) => string,
  ) {}

  async create(principal: Principal, ttlMs: number, now: number): Promise<{ id: string; record: SessionRecord }> {
    const id = randomBytes(32).toString('base64url');
    // A session outlives no credential: an OIDC JWT's exp bounds it.
    const expiresAt = Math.min(now + ttlMs, principal.expiresAt ?? Number.POSITIVE_INFINITY);
    const record: SessionRecord = { name: principal.name, role: principal.role, createdAt: now, expiresAt };
    await this.redis.set(this.key(idHash(id)), JSON.stringify(record), 'PX', Math.max(1, expiresAt - now));
    return { id, record };
  }

  async get(id: string, now: number): Promise<SessionRecord | undefined> {
    if (!ID.test(id)) return undefined;
    const text = await this.redis.get(this.key(idHash(id)));
    if (!text) return undefined;
    const record = JSON.parse(text) as SessionRecord;
    return record.expiresAt > now ? record : undefined;
  }

  async delete(id: string): Promise<void> {
    if (ID.test(id)) await this.redis.del(this.key(idHash(id)));
  }
}

/** The session's anti-forgery token: only a page that read it from the API (same origin) can send it. */
export function csrfTokenOf(sessionId: string): string {
  return createHmac('sha256', sessionId).update('rotator csrf v1').digest('base64url');
}

/**
 * The event streams open on each session in this process, so signing out closes them at once
 * (streams in other API processes notice at their next heartbeat, which asks Redis).
 */
export class SessionStreams {
  private readonly bySession = new Map<string, Set<() => void>>();

  add(sessionId: string, end: () => void): () => void {
    let set = this.bySession.get(sessionId);
    if (!set) this.bySession.set(sessionId, (set = new Set()));
    set.add(end);
    return () => {
      set.delete(end);
      if (set.size === 0) this.bySession.delete(sessionId);
    };
  }

  endAll(sessionId: string): void {
    for (const end of [...(this.bySession.get(sessionId) ?? [])]) end();
  }
}
