/**
 * The emulator's world: accounts in parent/subaccount trees, their API keys and messages, plus
 * the JSON shapes Twilio's v2010 API returns for them.
 *
 * Every lookup is a Map hit; nothing here scans all accounts except the paged account list.
 */
import { randomBytes } from 'node:crypto';
import { OrderedIndex } from './paging.ts';

export type AccountStatus = 'active' | 'suspended' | 'closed';
/**
 * Main keys are created only in the Console (here: seeded); keys created by the v2010 API are
 * Standard; IAM v1 (`/v1/Keys`, KeyType=restricted) creates Restricted keys, each with a Policy.
 */
export type KeyType = 'main' | 'standard' | 'restricted';

/** A restricted key's policy, as IAM v1 takes and returns it: `{allow: ["/twilio/…/read", …]}`. */
export interface KeyPolicy {
  allow: string[];
}

export interface AccountRecord {
  readonly sid: string;
  friendlyName: string;
  authToken: string;
  /** The token `revokeCredential` replaced, so `restoreCredential` can bring it back. */
  revokedAuthToken?: string | undefined;
  /**
   * Accounts v1 `POST /v1/AuthTokens/Secondary`: valid beside the primary until it is promoted
   * (`POST /v1/AuthTokens/Promote`, the primary then fails with 20003) or deleted.
   */
  secondaryAuthToken?: { token: string; dateCreated: Date } | undefined;
  /** Equals `sid` for a parent (top-level) account, as Twilio reports it. */
  readonly ownerAccountSid: string;
  status: AccountStatus;
  /**
   * The parent's credentials are refused on this subaccount (401 20003) while its own keys keep
   * working: how a test revokes "the admin credential for one subaccount".
   */
  parentDenied?: boolean;
  readonly dateCreated: Date;
  dateUpdated: Date;
  readonly keys: OrderedIndex<KeyRecord>;
  readonly messages: OrderedIndex<MessageRecord>;
  /** Parents only: the parent itself first, then its subaccounts in creation order. */
  readonly tree?: OrderedIndex<AccountRecord> | undefined;
}

export interface KeyRecord {
  readonly sid: string;
  readonly accountSid: string;
  friendlyName: string;
  readonly secret: string;
  readonly type: KeyType;
  /** Restricted keys only. */
  readonly policy?: KeyPolicy | undefined;
  readonly dateCreated: Date;
  dateUpdated: Date;
  /** Deleted keys stay in the global index (not in their account's list) so they can be restored. */
  deleted: boolean;
}

export interface MessageRecord {
  readonly sid: string;
  readonly accountSid: string;
  readonly to: string;
  readonly from: string | null;
  readonly body: string;
  readonly messagingServiceSid: string | null;
  readonly dateCreated: Date;
  /** Which credential sent it: lets demos show which key each consumer is using. */
  readonly sentWith: string;
}

export interface KeyView {
  sid: string;
  accountSid: string;
  friendlyName: string;
  type: KeyType;
  policy?: KeyPolicy;
  dateCreated: Date;
  dateUpdated: Date;
}

export const API_VERSION = '2010-04-01';
export const API_PREFIX = `/${API_VERSION}`;
/** Bounds memory when simulated consumers send messages for hours. */
const MAX_MESSAGES_PER_ACCOUNT = 1000;

export function newSid(prefix: string): string {
  return prefix + randomBytes(16).toString('hex');
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Twilio key secrets are 32 alphanumerics. */
function newKeySecret(): string {
  const bytes = randomBytes(32);
  let out = '';
  // The slight modulo bias is irrelevant for an emulator's secrets.
  for (const b of bytes) out += ALNUM[b % 62] ?? 'x';
  return out;
}

function newAuthToken(): string {
  return randomBytes(16).toString('hex');
}

/** RFC 2822 as Twilio writes it: `Thu, 30 Jul 2015 20:00:00 +0000`. */
export function rfc2822(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}

export class TwilioState {
  readonly accounts = new Map<string, AccountRecord>();
  /** Every key ever created, by sid: authentication resolves an SK without knowing its account. */
  readonly keys = new Map<string, KeyRecord>();
  private readonly secrets: string[] = [];
  private readonly secretSet = new Set<string>();
  onSubaccountCreated: ((account: AccountRecord) => void) | undefined;

  createParentAccount(friendlyName: string): AccountRecord {
    const sid = newSid('AC');
    const tree = new OrderedIndex<AccountRecord>();
    const account = this.newAccount(sid, sid, friendlyName, tree);
    tree.add(account);
    return account;
  }

  createSubaccount(parentSid: string, friendlyName: string): AccountRecord {
    const parent = this.accounts.get(parentSid);
    if (!parent?.tree) throw new Error(`${parentSid} is not a parent account`);
    const account = this.newAccount(newSid('AC'), parent.sid, friendlyName, undefined);
    parent.tree.add(account);
    this.onSubaccountCreated?.(account);
    return account;
  }

  /** `createdAt`: a key made before the test began (the compliance report judges key ages). */
  createKey(accountSid: string, friendlyName: string, type: KeyType, createdAt?: Date, policy?: KeyPolicy): KeyRecord {
    const account = this.accounts.get(accountSid);
    if (!account) throw new Error(`no account ${accountSid}`);
    const now = createdAt ?? new Date();
    const key: KeyRecord = {
      sid: newSid('SK'),
      accountSid,
      friendlyName,
      secret: newKeySecret(),
      type,
      ...(policy ? { policy: { allow: [...policy.allow] } } : {}),
      dateCreated: now,
      dateUpdated: now,
      deleted: false,
    };
    this.remember(key.secret);
    this.keys.set(key.sid, key);
    account.keys.add(key);
    return key;
  }

  deleteKey(sid: string): boolean {
    const key = this.keys.get(sid);
    if (!key || key.deleted) return false;
    key.deleted = true;
    this.accounts.get(key.accountSid)?.keys.remove(sid);
    return true;
  }

  /** Undoes `deleteKey` (for fault drills: "the delete never happened"). */
  undeleteKey(sid: string): boolean {
    const key = this.keys.get(sid);
    if (!key || !key.deleted) return false;
    key.deleted = false;
    // Re-added at the end: Twilio never does this, but list order is not part of any contract.
    this.accounts.get(key.accountSid)?.keys.add(key);
    return true;
  }

  rotateAuthToken(accountSid: string): string {
    const account = this.accounts.get(accountSid);
    if (!account) throw new Error(`no account ${accountSid}`);
    account.revokedAuthToken = account.authToken;
    account.authToken = newAuthToken();
    account.dateUpdated = new Date();
    this.remember(account.authToken);
    return account.authToken;
  }

  /** Accounts v1: a new secondary token replaces any earlier secondary. */
  createSecondaryAuthToken(account: AccountRecord): { token: string; dateCreated: Date } {
    const secondary = { token: newAuthToken(), dateCreated: new Date() };
    account.secondaryAuthToken = secondary;
    this.remember(secondary.token);
    return secondary;
  }

  /** Accounts v1: the secondary becomes the primary; the old primary is refused from now on. */
  promoteSecondaryAuthToken(account: AccountRecord): string | undefined {
    const secondary = account.secondaryAuthToken;
    if (!secondary) return undefined;
    account.authToken = secondary.token;
    account.secondaryAuthToken = undefined;
    account.dateUpdated = new Date();
    return account.authToken;
  }

  restoreAuthToken(accountSid: string): boolean {
    const account = this.accounts.get(accountSid);
    if (!account?.revokedAuthToken) return false;
    account.authToken = account.revokedAuthToken;
    account.revokedAuthToken = undefined;
    return true;
  }

  createMessage(
    account: AccountRecord,
    m: { to: string; from: string | null; body: string; messagingServiceSid: string | null },
    sentWith: string,
  ): MessageRecord {
    const msg: MessageRecord = {
      sid: newSid('SM'),
      accountSid: account.sid,
      ...m,
      dateCreated: new Date(),
      sentWith,
    };
    account.messages.add(msg);
    if (account.messages.size > MAX_MESSAGES_PER_ACCOUNT) account.messages.removeOldest();
    return msg;
  }

  /** The top-level account of the tree `accountSid` belongs to. */
  rootOf(account: AccountRecord): AccountRecord {
    return this.accounts.get(account.ownerAccountSid) ?? account;
  }

  issuedSecrets(): string[] {
    return this.secrets.slice();
  }

  listKeys(accountSid: string): KeyView[] {
    const account = this.accounts.get(accountSid);
    if (!account) return [];
    return [...account.keys.values()].map(keyView);
  }

  private newAccount(
    sid: string,
    ownerAccountSid: string,
    friendlyName: string,
    tree: OrderedIndex<AccountRecord> | undefined,
  ): AccountRecord {
    const now = new Date();
    const account: AccountRecord = {
      sid,
      friendlyName,
      authToken: newAuthToken(),
      ownerAccountSid,
      status: 'active',
      dateCreated: now,
      dateUpdated: now,
      keys: new OrderedIndex<KeyRecord>(),
      messages: new OrderedIndex<MessageRecord>(),
      tree,
    };
    this.remember(account.authToken);
    this.accounts.set(sid, account);
    return account;
  }

  private remember(secret: string): void {
    if (this.secretSet.has(secret)) return;
    this.secretSet.add(secret);
    this.secrets.push(secret);
  }
}

export function keyView(k: KeyRecord): KeyView {
  return {
    sid: k.sid,
    accountSid: k.accountSid,
    friendlyName: k.friendlyName,
    type: k.type,
    ...(k.policy ? { policy: { allow: [...k.policy.allow] } } : {}),
    dateCreated: k.dateCreated,
    dateUpdated: k.dateUpdated,
  };
}

// ---- Wire shapes (snake_case, RFC 2822 dates, relative `uri`s), as api.twilio.com answers ----

const ACCOUNT_SUBRESOURCES = [
  ['addresses', 'Addresses'],
  ['applications', 'Applications'],
  ['authorized_connect_apps', 'AuthorizedConnectApps'],
  ['available_phone_numbers', 'AvailablePhoneNumbers'],
  ['balance', 'Balance'],
  ['calls', 'Calls'],
  ['conferences', 'Conferences'],
  ['connect_apps', 'ConnectApps'],
  ['incoming_phone_numbers', 'IncomingPhoneNumbers'],
  ['keys', 'Keys'],
  ['messages', 'Messages'],
  ['notifications', 'Notifications'],
  ['outgoing_caller_ids', 'OutgoingCallerIds'],
  ['queues', 'Queues'],
  ['recordings', 'Recordings'],
  ['short_codes', 'SMS/ShortCodes'],
  ['signing_keys', 'SigningKeys'],
  ['sip', 'SIP'],
  ['transcriptions', 'Transcriptions'],
  ['usage', 'Usage'],
] as const;

export function accountJson(a: AccountRecord): Record<string, unknown> {
  const base = `${API_PREFIX}/Accounts/${a.sid}`;
  const subresourceUris: Record<string, string> = {};
  for (const [name, path] of ACCOUNT_SUBRESOURCES) subresourceUris[name] = `${base}/${path}.json`;
  return {
    auth_token: a.authToken,
    date_created: rfc2822(a.dateCreated),
    date_updated: rfc2822(a.dateUpdated),
    friendly_name: a.friendlyName,
    owner_account_sid: a.ownerAccountSid,
    sid: a.sid,
    status: a.status,
    subresource_uris: subresourceUris,
    type: 'Full',
    uri: `${base}.json`,
  };
}

/** IAM v1 key shape (`/v1/Keys`): like v2010's, with `policy` (null for non-restricted keys). */
export function iamKeyJson(k: KeyRecord, withSecret = false): Record<string, unknown> {
  const out: Record<string, unknown> = {
    sid: k.sid,
    friendly_name: k.friendlyName,
    date_created: rfc2822(k.dateCreated),
    date_updated: rfc2822(k.dateUpdated),
    policy: k.policy ?? null,
  };
  if (withSecret) out['secret'] = k.secret;
  return out;
}

export function keyJson(k: KeyRecord, withSecret = false): Record<string, unknown> {
  const out: Record<string, unknown> = {
    sid: k.sid,
    friendly_name: k.friendlyName,
    date_created: rfc2822(k.dateCreated),
    date_updated: rfc2822(k.dateUpdated),
  };
  if (withSecret) out['secret'] = k.secret;
  return out;
}

export function messageJson(m: MessageRecord): Record<string, unknown> {
  const uri = `${API_PREFIX}/Accounts/${m.accountSid}/Messages/${m.sid}.json`;
  const created = rfc2822(m.dateCreated);
  return {
    account_sid: m.accountSid,
    api_version: API_VERSION,
    body: m.body,
    date_created: created,
    date_sent: null,
    date_updated: created,
    direction: 'outbound-api',
    error_code: null,
    error_message: null,
    from: m.from,
    messaging_service_sid: m.messagingServiceSid,
    num_media: '0',
    num_segments: String(Math.max(1, Math.ceil(m.body.length / 160))),
    price: null,
    price_unit: 'USD',
    sid: m.sid,
    status: 'queued',
    subresource_uris: { media: uri.replace(/\.json$/, '/Media.json') },
    to: m.to,
    uri,
  };
}
