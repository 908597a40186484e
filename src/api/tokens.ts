import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** The operator roles, each allowed what the one before it is. */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
/**
 * Every role a token may have: the operator roles, and `consumer` (issue 15), outside their order:
 * an application's token that may send heartbeats (POST /v1/consumers/heartbeat) and nothing else,
 * and that no operator role may use for it either.
 */
export const TOKEN_ROLES = [...ROLES, 'consumer'] as const;
export type Role = (typeof TOKEN_ROLES)[number];

export function roleAtLeast(have: Role, need: Role): boolean {
  if (have === 'consumer' || need === 'consumer') return have === need;
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

export interface TokenEntry {
  name: string;
  role: Role;
  hash: Buffer;
}

export interface Principal {
  name: string;
  role: Role;
  /** When the credential stops being valid (ms since epoch): an OIDC JWT's `exp`. API tokens do not expire. */
  expiresAt?: number;
}

/** `API_TOKENS`: comma-separated `name:role:sha256hex`. Only hashes are configured, never tokens. */
export function parseApiTokens(spec: string): TokenEntry[] {
  const entries: TokenEntry[] = [];
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [name, role, hex, ...rest] = part.split(':');
    if (!name || !role || !hex || rest.length) throw new Error(`API_TOKENS entry "${part.split(':')[0]}…" must be name:role:sha256hex`);
    if (!(TOKEN_ROLES as readonly string[]).includes(role)) throw new Error(`API_TOKENS entry "${name}" has role "${role}"; roles are ${TOKEN_ROLES.join(', ')}`);
    if (!/^[0-9a-f]{64}$/i.test(hex)) throw new Error(`API_TOKENS entry "${name}" must end with the token's sha256 in hex (npm run mint-token prints it)`);
    entries.push({ name, role: role as Role, hash: Buffer.from(hex, 'hex') });
  }
  return entries;
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/**
 * Compare the presented token's hash against every entry in constant time (no early exit), so
 * timing reveals neither which entry matched nor how much of a hash did.
 */
export function verifyToken(entries: readonly TokenEntry[], token: string): Principal | undefined {
  const presented = hashToken(token);
  let found: TokenEntry | undefined;
  for (const e of entries) {
    if (timingSafeEqual(e.hash, presented) && !found) found = e;
  }
  return found ? { name: found.name, role: found.role } : undefined;
}

/** What a token's name may be: it is logged and audited as the caller, and `:` separates API_TOKENS fields. */
export const TOKEN_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** A new random token and the API_TOKENS entry that accepts it. */
export function mintToken(name: string, role: Role): { token: string; entry: string } {
  if (!TOKEN_NAME.test(name)) throw new Error('token name: 1–64 letters, digits, _ . -');
  const token = `rot_${randomBytes(32).toString('base64url')}`;
  return { token, entry: `${name}:${role}:${hashToken(token).toString('hex')}` };
}
