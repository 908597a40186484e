import { createHash } from 'node:crypto';
import { inspect } from 'node:util';

const REDACTED = '[redacted]';

/**
 * A secret value (API key secret, auth token, store token). It prints as `[redacted]` through
 * every path a value usually leaks by — String(), template literals, JSON.stringify,
 * util.inspect / console.log / pino — so only an explicit `reveal()` yields the plain text.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    if (typeof value !== 'string' || value.length === 0) throw new TypeError('Secret needs a non-empty string');
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  equals(other: Secret): boolean {
    return this.#value === other.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}

/**
 * The credential every store holds for a managed credential: the shape of AWS's managed
 * `TwilioApiKey` secret. API keys and restricted keys are stored as such.
 *
 * An account's Auth Token is stored as `{accountSid, authToken}` (AWS's `TwilioAuthToken` shape)
 * but travels through the stores and steps in this same shape: `apiKeySecret` is the token and
 * `apiKeySid` its fingerprint (`authTokenId`), since an Auth Token has no SID of its own and the
 * stores and steps tell versions apart by that identifier.
 */
export interface TwilioApiKeyCredential {
  accountSid: string;
  apiKeySid: string;
  apiKeySecret: Secret;
}

const AUTH_TOKEN_ID = 'AT-';

/**
 * An Auth Token's identifier: `AT-` + 16 hex of its SHA-256. Identifies a token in records, store
 * notes and history without revealing it (64 bits of a hash of a 128-bit random token).
 */
export function authTokenId(token: Secret | string): string {
  const plain = typeof token === 'string' ? token : token.reveal();
  return AUTH_TOKEN_ID + createHash('sha256').update(plain).digest('hex').slice(0, 16);
}

export function isAuthTokenId(id: string | null | undefined): boolean {
  return typeof id === 'string' && id.startsWith(AUTH_TOKEN_ID);
}

export function authTokenCredential(accountSid: string, token: Secret): TwilioApiKeyCredential {
  return { accountSid, apiKeySid: authTokenId(token), apiKeySecret: token };
}

/** The JSON written to a store (SPEC.md "Stored secret format"). */
export function serializeCredential(c: TwilioApiKeyCredential): string {
  return JSON.stringify(plainCredential(c));
}

export function credentialFromObject(raw: unknown): TwilioApiKeyCredential {
  const o = raw as Record<string, unknown> | null;
  if (o && typeof o.accountSid === 'string' && typeof o.authToken === 'string' && o.apiKeySid === undefined) {
    return authTokenCredential(o.accountSid, new Secret(o.authToken));
  }
  if (!o || typeof o.accountSid !== 'string' || typeof o.apiKeySid !== 'string' || typeof o.apiKeySecret !== 'string') {
    throw new TypeError('stored secret lacks accountSid, apiKeySid or apiKeySecret (or accountSid and authToken)');
  }
  return { accountSid: o.accountSid, apiKeySid: o.apiKeySid, apiKeySecret: new Secret(o.apiKeySecret) };
}

export function plainCredential(c: TwilioApiKeyCredential): Record<string, string> {
  if (isAuthTokenId(c.apiKeySid)) return { accountSid: c.accountSid, authToken: c.apiKeySecret.reveal() };
  return { accountSid: c.accountSid, apiKeySid: c.apiKeySid, apiKeySecret: c.apiKeySecret.reveal() };
}

/** The identifier (`apiKeySid`, or an Auth Token's `authTokenId`) of a credential in its stored plain shape. */
export function plainCredentialId(o: Record<string, string> | undefined): string | undefined {
  if (!o) return undefined;
  if (typeof o.apiKeySid === 'string') return o.apiKeySid;
  return typeof o.authToken === 'string' ? authTokenId(o.authToken) : undefined;
}
