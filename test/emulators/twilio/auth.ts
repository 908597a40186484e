/**
 * HTTP Basic authentication and authorization the way api.twilio.com applies them, and the
 * bounded log of who called what (tests assert which credential a rotation used).
 */
import type { AccountRecord, TwilioState } from './state.ts';

export type PrincipalType = 'auth_token' | 'main_key' | 'standard_key' | 'restricted_key';

export interface Principal {
  /** The AC or SK sid presented as the Basic username. */
  sid: string;
  type: PrincipalType;
  /** The account the credential belongs to. */
  account: AccountRecord;
}

export type AuthResult =
  | { ok: true; principal: Principal }
  | { ok: false; username: string; type: PrincipalType | null };

/** What a request touches, for the Standard-key rule ("no /Accounts, no /Keys"). */
export type ResourceKind = 'accounts' | 'keys' | 'other';

export function parseBasic(header: string | undefined): { username: string; password: string } | null {
  if (!header || !/^basic /i.test(header)) return null;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * The account a username claims to act for, without checking the password: the concurrency
 * limit is charged to that account's tree before anything else happens, as Twilio does.
 */
export function claimedAccount(state: TwilioState, username: string): AccountRecord | undefined {
  if (username.startsWith('AC')) return state.accounts.get(username);
  if (username.startsWith('SK')) {
    const key = state.keys.get(username);
    return key ? state.accounts.get(key.accountSid) : undefined;
  }
  return undefined;
}

export function authenticate(state: TwilioState, header: string | undefined): AuthResult {
  const creds = parseBasic(header);
  if (!creds) return { ok: false, username: '', type: null };
  const { username, password } = creds;
  if (username.startsWith('AC')) {
    const account = state.accounts.get(username);
    if (!account) return { ok: false, username, type: null };
    // A secondary Auth Token (Accounts v1) authenticates like the primary until promoted or deleted.
    const valid = password === account.authToken || (account.secondaryAuthToken !== undefined && password === account.secondaryAuthToken.token);
    if (!valid || account.status !== 'active') {
      return { ok: false, username, type: 'auth_token' };
    }
    return { ok: true, principal: { sid: username, type: 'auth_token', account } };
  }
  if (username.startsWith('SK')) {
    const key = state.keys.get(username);
    if (!key) return { ok: false, username, type: null };
    const type: PrincipalType = key.type === 'main' ? 'main_key' : key.type === 'restricted' ? 'restricted_key' : 'standard_key';
    const account = state.accounts.get(key.accountSid);
    if (!account || key.deleted || password !== key.secret || account.status !== 'active') {
      return { ok: false, username, type };
    }
    return { ok: true, principal: { sid: username, type, account } };
  }
  return { ok: false, username, type: null };
}

/**
 * May `principal` act on `target`'s `kind` resources?
 * - Standard and Restricted keys: never on Accounts or Keys; other resources only of their own
 *   account (a Restricted key further only where its policy allows: see `permits`).
 * - Auth token: its own account, and every subaccount when it is a parent's.
 * - Main key: like the auth token, except on subaccounts where `parentMainKeyOnSubaccounts`
 *   decides (contested upstream; see FACTS.md).
 */
export function authorize(
  principal: Principal,
  target: AccountRecord,
  kind: ResourceKind,
  parentMainKeyOnSubaccounts: boolean,
): boolean {
  if (principal.type === 'standard_key' || principal.type === 'restricted_key') {
    return kind === 'other' && target.sid === principal.account.sid;
  }
  if (target.sid === principal.account.sid) return true;
  const isParentOfTarget = principal.account.tree !== undefined && target.ownerAccountSid === principal.account.sid;
  if (!isParentOfTarget || target.parentDenied) return false;
  return principal.type === 'auth_token' || parentMainKeyOnSubaccounts;
}

/**
 * Does a Restricted key's policy allow `permission` (e.g. `/twilio/messaging/messages/read`)?
 * Other principals are not limited by a policy. A call outside the policy → 403 70051.
 */
export function permits(principal: Principal, key: { policy?: { allow: string[] } | undefined } | undefined, permission: string | null): boolean {
  if (principal.type !== 'restricted_key') return true;
  return permission !== null && (key?.policy?.allow.includes(permission) ?? false);
}

// ---- Auth log ----

export interface AuthLogEntry {
  seq: number;
  /** Epoch milliseconds. */
  at: number;
  method: string;
  /** Path without the query string. */
  path: string;
  /** The Basic username presented ('' when none). */
  principal: string;
  /** null when the username names no known credential. */
  principalType: PrincipalType | null;
  /** The account the request targeted, when the route names one. */
  accountSid: string | null;
  /** HTTP status answered; 0 when the emulator answered nothing (reset or timeout fault). */
  status: number;
}

/** Fixed-size ring buffer: appends are O(1) and memory stays bounded under benchmarks. */
export class AuthLog {
  private readonly ring: (AuthLogEntry | undefined)[];
  private nextSeq = 1;

  constructor(private readonly capacity: number) {
    this.ring = new Array<AuthLogEntry | undefined>(capacity);
  }

  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  append(entry: Omit<AuthLogEntry, 'seq'>): AuthLogEntry {
    const e: AuthLogEntry = { seq: this.nextSeq++, ...entry };
    this.ring[(e.seq - 1) % this.capacity] = e;
    return e;
  }

  /** Entries with seq > `since`, oldest first. */
  since(since = 0, limit = Number.POSITIVE_INFINITY): AuthLogEntry[] {
    const oldest = Math.max(since + 1, this.nextSeq - this.capacity, 1);
    const out: AuthLogEntry[] = [];
    for (let seq = oldest; seq < this.nextSeq && out.length < limit; seq++) {
      const e = this.ring[(seq - 1) % this.capacity];
      if (e) out.push(e);
    }
    return out;
  }

  clear(): void {
    this.ring.fill(undefined);
  }
}
