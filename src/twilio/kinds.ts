/**
 * Twilio operations for the credential kinds beyond Standard API keys: restricted keys (IAM v1
 * `/v1/Keys`, `KeyType=restricted` with a `Policy`) and an account's Auth Token (Accounts v1
 * `/v1/AuthTokens/Secondary`, `/v1/AuthTokens/Promote`). Steps depend on these narrow interfaces.
 */
import { Secret } from '../domain/secret.ts';

/** A restricted key's policy, opaque JSON copied as Twilio returns it (`{allow: [permission, …]}`). */
export type KeyPolicy = Record<string, unknown>;

export interface RestrictedKeyOps {
  /** Keys of the account as IAM v1 lists them (every page), with their FriendlyName. */
  listIamKeys(accountSid: string): Promise<{ sid: string; friendlyName: string }[]>;
  /** The key's policy (null for a Standard key); undefined when Twilio has no such key. */
  fetchKeyPolicy(accountSid: string, keySid: string): Promise<KeyPolicy | null | undefined>;
  createRestrictedKey(accountSid: string, friendlyName: string, policy: KeyPolicy): Promise<{ sid: string; secret: Secret; policy: KeyPolicy | null }>;
  deleteIamKey(accountSid: string, keySid: string): Promise<'deleted' | 'absent'>;
  /**
   * One call the policy allows, made with the key itself: proves it authenticates and carries the
   * policy's rights. Returns which call it made.
   */
  verifyRestrictedKey(accountSid: string, keySid: string, secret: Secret, policy: KeyPolicy): Promise<string>;
}

export interface AuthTokenOps {
  /** The account's primary Auth Token, as the parent reads it (v2010 Account `auth_token`). Held in memory only. */
  primaryAuthToken(accountSid: string): Promise<Secret>;
  /** `POST /v1/AuthTokens/Secondary` as the account (authenticated with `primary`); replaces any earlier secondary. */
  createSecondaryAuthToken(accountSid: string, primary: Secret): Promise<Secret>;
  /** `DELETE /v1/AuthTokens/Secondary`; 'absent' when there is none. */
  deleteSecondaryAuthToken(accountSid: string, primary: Secret): Promise<'deleted' | 'absent'>;
  /** `POST /v1/AuthTokens/Promote`, authenticated with the secondary: from now on the old primary fails (20003). */
  promoteSecondaryAuthToken(accountSid: string, secondary: Secret): Promise<void>;
  /** Does Twilio accept this token for the account? (an authenticated read; false on 401) */
  authTokenWorks(accountSid: string, token: Secret): Promise<boolean>;
}

/** Read calls Rotator knows how to make with a restricted key, by the permission that allows them. */
export const VERIFYING_READS = ['/twilio/messaging/messages/read', '/twilio/usage/balance/read'] as const;

/** Which verifying read a policy allows, if any. */
export function verifyingRead(policy: KeyPolicy): (typeof VERIFYING_READS)[number] | undefined {
  const allow = Array.isArray(policy.allow) ? (policy.allow as unknown[]) : [];
  return VERIFYING_READS.find((p) => allow.includes(p));
}

/** Policies compare as canonical JSON (key order does not matter, array order does). */
export function samePolicy(a: KeyPolicy | null | undefined, b: KeyPolicy | null | undefined): boolean {
  return canonical(a ?? null) === canonical(b ?? null);
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v as object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

export { Secret };
