import type { Redis } from 'ioredis';
import {
  complianceCsv,
  complianceReport,
  type ComplianceReport,
  type CredentialFacts,
  type CredentialRow,
  type PolicyFacts,
  type SubaccountFacts,
  type SubaccountRow,
} from '../domain/compliance.ts';
import { isValidLabel, parseCredentialId } from '../domain/credential.ts';
import { detached, storedRowText, type RowText } from '../domain/compliance-row.ts';
import type { ComplianceRows } from './compliance-rows.ts';
import type { CompiledPolicy, PolicyCatalog } from '../domain/policy.ts';
import { rotationDeadline } from '../domain/planner.ts';
import { type AccountRecord, type AccountRepository } from '../state/accounts.ts';
import { type CredentialRepository, type ManagedCredential } from '../state/credentials.ts';
import type { PolicyRepository } from '../state/policies.ts';
import { scanStatus, type ComplianceFacts, type LastScan, type ScannedSubaccount, type ScanStatus } from '../state/compliance.ts';
import { redisKeys, type RedisKeys } from '../state/keys.ts';
import { isoTime } from '../state/iso.ts';
import { entryOf, type FleetEntry } from './fleet.ts';

/**
 * The compliance report's I/O (issue 13 item 6): joins each managed credential with its fleet entry
 * (labels, the policy that applies), its deadline (the planner's rule) and what the last compliance
 * scan found for its subaccount, then lets the pure domain (domain/compliance.ts) judge it. Nothing
 * here calls Twilio or the store: the scan (compliance-scan.ts) did, and its facts say when.
 */

export type CredentialItem = CredentialRow & { scannedAt: string | null };
export type SubaccountItem = SubaccountRow & { scannedAt: string | null };

export interface ComplianceFilter {
  overdue?: boolean;
  label?: string;
  policy?: string;
}

export interface ComplianceReaderDeps {
  redis: Redis;
  prefix: string;
  credentials: Pick<CredentialRepository, 'getMany'>;
  accounts: Pick<AccountRepository, 'getMany'>;
  policies: Pick<PolicyRepository, 'catalog'>;
  facts: ComplianceFacts;
  keyNamePrefix: string;
  /** The stored rows and their renderer (service/compliance-rows.ts). */
  rows: Pick<ComplianceRows, 'store' | 'render'>;
  /** How many rows (their JSON texts, ~0.7 KB each) to keep in this process between pages (RowTextCache). */
  keepRows?: number;
}

/** A page of a filtered list examines at most this many credentials, so a rare match cannot make one request read the whole fleet. */
export const EXAMINE_PER_PAGE = 1000;

export class ComplianceReader {
  readonly #d: ComplianceReaderDeps;
  readonly #keys: RedisKeys;
  readonly #kept: RowTextCache;
  /** Pages (by limit and start) whose every row was kept here after they were last read: read without their rows. */
  #keptPages = new Set<string>();

  constructor(deps: ComplianceReaderDeps) {
    this.#d = deps;
    this.#kept = new RowTextCache(deps.keepRows);
    this.#keys = redisKeys(deps.prefix);
  }

  lastScan(): Promise<LastScan | null> {
    return this.#d.facts.lastScan();
  }

  /**
   * Credentials by id after `after`, each row as its JSON text (CredentialItem; the route joins
   * them). Unfiltered: exactly `limit` (fewer on the last page). Filtered: up to `limit` matches
   * among the next EXAMINE_PER_PAGE credentials, so a page may hold fewer than `limit`, even none,
   * and still have a next cursor: follow it until it is null.
   *
   * The rows are rendered when their inputs change and stored (service/compliance-rows.ts): a page
   * is one script returning the ids, the stamps their current rows carry and (unless every row of
   * the page was kept here after it was last read) the stored rows, as one text; the clock's fields
   * (key age, overdue, within policy) are filled in from stored timestamps (storedRowText), and the
   * row's JSON text is kept while it holds. A row the script did not hand out current — its
   * subaccount written since it was rendered, the policies changed, never rendered — is rendered
   * here from its inputs (and stored), so the page is never stale.
   */
  async credentialPage(opts: { limit: number; after?: string; filter: ComplianceFilter; now: number; withScan?: boolean }): Promise<{ rows: string[]; nextCursor: string | null; scan?: ScanStatus }> {
    const filtered = isFiltered(opts.filter);
    const want = filtered ? Math.max(opts.limit, EXAMINE_PER_PAGE) : opts.limit;
    const { now } = opts;
    const store = this.#d.rows.store;
    const pageKey = `${want}|${opts.after ?? ''}`;
    const page = await store.page(opts.after ? `(${opts.after}` : '-', want, { withRows: !this.#keptPages.has(pageKey), withScan: opts.withScan === true });
    const scan = page.scan ? { scan: scanStatus(page.scan.last, page.scan.lockMs, page.scan.requestedMs) } : {};
    const examined = page.ids.slice(0, want);
    const more = page.ids.length > want;
    const texts: Array<RowText | undefined> = [];
    const missing: number[] = [];
    for (let i = 0; i < examined.length; i++) {
      const t = this.#kept.get(examined[i]!, page.stamps[i]!, now);
      texts.push(t);
      if (!t) missing.push(i);
    }
    let keptAll = true;
    if (missing.length) {
      // Rows not kept here: as the page read them, or read now; any not current (a write since, a policy edit, never rendered) rendered now.
      const raw = page.rows ? missing.map((i) => page.rows![i]!) : await store.rows(missing.map((i) => examined[i]!));
      const stale: number[] = [];
      missing.forEach((i, j) => {
        const r = raw[j];
        const stamp = page.stamps[i]!;
        // A row stored in another layout gives null: rendered again, as a stale one.
        const t = r && r.length > stamp.length && r.charCodeAt(stamp.length) === 0x1f && r.startsWith(stamp) ? textOf(examined[i]!, r, now) : null;
        if (!t) return void stale.push(i);
        texts[i] = t;
        if (!this.#kept.admit(examined[i]!, t)) keptAll = false;
      });
      if (stale.length) {
        const fresh = await this.#d.rows.render([...new Set(stale.map((i) => sidOf(examined[i]!)))]);
        for (const i of stale) {
          const r = fresh.get(examined[i]!);
          const t = r === undefined ? null : textOf(examined[i]!, r, now);
          if (!t) continue;
          texts[i] = t;
          if (!this.#kept.admit(examined[i]!, t)) keptAll = false;
        }
        keptAll = false;
      }
    }
    if (keptAll !== this.#keptPages.has(pageKey)) {
      if (!keptAll) this.#keptPages.delete(pageKey);
      else {
        if (this.#keptPages.size >= 1000) this.#keptPages = new Set();
        this.#keptPages.add(pageKey);
      }
    }
    const rows: string[] = [];
    let last: string | undefined;
    const policy = opts.filter.policy === undefined ? undefined : JSON.stringify(opts.filter.policy);
    for (let i = 0; i < examined.length; i++) {
      const t = texts[i];
      // An indexed credential without a record (none is deleted; a race with a write at most).
      if (!t) continue;
      if (filtered && !textMatches(t, opts.filter, policy)) continue;
      if (rows.length === opts.limit) return { rows, nextCursor: last!, ...scan };
      rows.push(t.json);
      last = examined[i];
    }
    return { rows, nextCursor: more ? (examined.at(-1) ?? null) : null, ...scan };
  }

  /**
   * The subaccount section: the inventory's subaccounts by SID (with what the scan found; one never
   * scanned says so), or with `sprawlOnly` those whose last scan found sprawl or leftover keys.
   */
  async subaccountPage(opts: { limit: number; after?: string; sprawlOnly: boolean; now: number }): Promise<{ items: SubaccountItem[]; nextCursor: string | null }> {
    let sids: string[];
    let nextCursor: string | null;
    if (opts.sprawlOnly) ({ sids, nextCursor } = await this.#d.facts.withSprawl({ limit: opts.limit, cursor: opts.after }));
    else {
      const ids = await this.#d.redis.zrangebylex(this.#keys.accounts, opts.after ? `(${opts.after}` : '-', '+', 'LIMIT', 0, opts.limit + 1);
      sids = ids.slice(0, opts.limit);
      nextCursor = ids.length > opts.limit ? (sids.at(-1) ?? null) : null;
    }
    const { report, scanned } = await this.#report([], sids, opts.now, true);
    return { items: report.subaccounts.map((s) => ({ ...s, scannedAt: scanTime(scanned.get(s.accountSid)) })), nextCursor };
  }

  /**
   * The whole report as CSV (complianceCsv's columns and record order), a chunk of subaccounts at a
   * time: every subaccount of the inventory or with a managed credential, in SID order, each chunk
   * read and judged on its own, so memory does not grow with the fleet. With a filter, only matching
   * credentials, and a subaccount's own records only where one of its credentials matches (or, for
   * `label`, the subaccount has the label).
   */
  async *csv(opts: { filter: ComplianceFilter; now: number; chunk?: number }): AsyncGenerator<string> {
    const filtered = isFiltered(opts.filter);
    let first = true;
    for await (const groups of this.groups(opts.chunk ?? 200)) {
      const { report, entries, accounts } = await this.#report(
        groups.flatMap((g) => g.credentialIds),
        groups.map((g) => g.accountSid),
        opts.now,
        true,
      );
      let r: ComplianceReport = report;
      if (filtered) {
        const credentials = report.credentials.filter((c) => matches(c, entries.get(`${c.accountSid}/${c.credential}`), opts.filter));
        const keep = new Set(credentials.map((c) => c.accountSid));
        if (opts.filter.label) for (const a of accounts.values()) if (a.labels.includes(opts.filter.label) && !opts.filter.overdue && !opts.filter.policy) keep.add(a.accountSid);
        r = { ...report, credentials, subaccounts: report.subaccounts.filter((s) => keep.has(s.accountSid)) };
      }
      const text = complianceCsv(r);
      if (first) {
        first = false;
        yield text;
      } else {
        // Every chunk is a whole CSV: its header line goes once, at the top.
        const body = text.slice(text.indexOf('\r\n') + 2);
        if (body) yield body;
      }
    }
  }

  /**
   * Every subaccount that the inventory lists or that has a managed credential, in SID order, with
   * the ids of its credentials, `batch` subaccounts at a time: a merge of the two lexical indexes,
   * paged, so neither is read whole. The scan walks the fleet this way too.
   */
  async *groups(batch = 200): AsyncGenerator<Array<{ accountSid: string; credentialIds: string[] }>> {
    const creds = lexPages(this.#d.redis, this.#keys.credentials);
    const accs = lexPages(this.#d.redis, this.#keys.accounts);
    let c = await creds.next();
    let a = await accs.next();
    let out: Array<{ accountSid: string; credentialIds: string[] }> = [];
    while (!c.done || !a.done) {
      const cs = c.done ? null : sidOf(c.value);
      const as = a.done ? null : a.value;
      const sid = (cs === null ? as : as === null ? cs : as < cs ? as : cs) as string;
      const group = { accountSid: sid, credentialIds: [] as string[] };
      while (!c.done && sidOf(c.value) === sid) {
        group.credentialIds.push(c.value);
        c = await creds.next();
      }
      if (!a.done && a.value === sid) a = await accs.next();
      out.push(group);
      if (out.length >= batch) {
        yield out;
        out = [];
      }
    }
    if (out.length) yield out;
  }

  /**
   * The domain's report over these credentials and subaccounts (the credentials' own subaccounts
   * judged too). Without `keyRows` the subaccounts are passed without their keys: a credentials page
   * needs only their status, and classifying every key of every subaccount was a third of its cost.
   */
  async #report(ids: readonly string[], extraSids: readonly string[], now: number, keyRows: boolean) {
    const sids = [...new Set([...ids.map(sidOf), ...extraSids])];
    const [creds, accountList, catalog, scannedList] = await Promise.all([this.#d.credentials.getMany(ids), this.#d.accounts.getMany(sids), this.#d.policies.catalog(), this.#d.facts.getMany(sids)]);
    const accounts = new Map(accountList.map((a) => [a.accountSid, a]));
    const scanned = new Map<string, ScannedSubaccount>();
    scannedList.forEach((s, i) => s && scanned.set(sids[i]!, s));
    const entries = new Map<string, FleetEntry>();
    const credentials: CredentialFacts[] = [];
    for (const c of creds) {
      if (!c) continue;
      const entry = entryOf(c, accounts.get(c.accountSid), catalog);
      entries.set(entry.id, entry);
      credentials.push(credentialFacts(entry, scanned.get(c.accountSid)));
    }
    const subaccounts = sids.map((sid) => {
      const f = subaccountFacts(sid, accounts.get(sid), scanned.get(sid), this.#d.keyNamePrefix);
      return keyRows ? f : { ...f, keys: null, stages: [] };
    });
    const report = complianceReport({ credentials, subaccounts, now });
    if (keyRows) for (const row of report.subaccounts) row.finding = subaccountFinding(row, scanned.get(row.accountSid));
    return { report, entries, scanned, accounts };
  }
}

/** Judge a batch of the fleet (the scan's totals): the same joins as a page, from values already read. */
export function judgeBatch(input: {
  credentials: readonly ManagedCredential[];
  accounts: ReadonlyMap<string, AccountRecord>;
  scanned: ReadonlyMap<string, ScannedSubaccount>;
  sids: readonly string[];
  catalog: PolicyCatalog;
  keyNamePrefix: string;
  now: number;
}): ComplianceReport {
  const credentials = input.credentials.map((c) => credentialFacts(entryOf(c, input.accounts.get(c.accountSid), input.catalog), input.scanned.get(c.accountSid)));
  const subaccounts = input.sids.map((sid) => subaccountFacts(sid, input.accounts.get(sid), input.scanned.get(sid), input.keyNamePrefix));
  return complianceReport({ credentials, subaccounts, now: input.now });
}

export function policyFacts(p: CompiledPolicy): PolicyFacts {
  return { name: p.name, interval: p.source.interval, intervalMs: p.intervalMs, maxKeyAge: p.source.maxKeyAge ?? null, maxKeyAgeMs: p.maxKeyAgeMs };
}

/**
 * One credential as the report judges it.
 *
 * The key the store hands out is the scan's reading of the store's current stage, unless a
 * rotation of the credential succeeded after the scan (then the record's key, which that rotation
 * wrote, is newer). Its age is Twilio's date_created as the scan listed it; a key the scan's list
 * does not hold is "not listed at Twilio". Without a scan, or after a newer rotation, the record's
 * own date is used. The deadline is the planner's (rotationDeadline): interval after the last
 * rotation or first sight, or maxKeyAge after the key's creation; an excluded policy has none.
 */
export function credentialFacts(entry: FleetEntry, scanned: ScannedSubaccount | undefined): CredentialFacts {
  const c = entry.credential;
  const policy = entry.assignment.policy;
  const stage = scanned?.stages.find((s) => s.name === c.name);
  const recordNewer = scanned !== undefined && c.lastRotatedAtMs !== null && c.lastRotatedAtMs > scanned.scannedAtMs;
  const fromScan = scanned !== undefined && stage !== undefined && !recordNewer;
  const keySid = fromScan ? stage.current : c.currentKeySid;
  let keyCreatedAt: number | null;
  if (fromScan && scanned.keys !== null) keyCreatedAt = keySid === null ? null : (scanned.keys.find((k) => k.sid === keySid)?.dateCreated ?? null);
  else keyCreatedAt = keySid !== null && keySid === c.currentKeySid ? c.keyCreatedAtMs : null;
  const lastRotation = c.lastRotation
    ? { at: c.lastRotation.atMs, outcome: c.lastRotation.outcome, rotationId: c.lastRotation.id }
    : c.lastRotatedAtMs !== null
      ? { at: c.lastRotatedAtMs, outcome: 'succeeded' }
      : null;
  const nextDueAt = policy.exclude ? null : rotationDeadline(policy, { id: entry.id, firstSeenMs: c.firstSeenAtMs, lastRotatedMs: c.lastRotatedAtMs, keyCreatedMs: keyCreatedAt }).deadlineMs;
  return { accountSid: c.accountSid, name: c.name, kind: c.kind, labels: entry.labels, policy: policyFacts(policy), currentKeySid: keySid, keyCreatedAt, lastRotation, nextDueAt };
}

/** A subaccount as the report judges it: the inventory's name and status (live), the scan's keys and stages. */
export function subaccountFacts(sid: string, account: AccountRecord | undefined, scanned: ScannedSubaccount | undefined, keyNamePrefix: string): SubaccountFacts {
  return {
    accountSid: sid,
    friendlyName: account?.friendlyName || scanned?.friendlyName || '',
    status: account?.status ?? scanned?.status ?? 'active',
    keys: scanned?.keys ?? null,
    stages: scanned?.stages ?? [],
    keyNamePrefix,
    rotationIds: scanned?.knownRotationIds ?? [],
  };
}

/** Why a subaccount's keys are not known, where the scan says more than the domain's "not listed". */
function subaccountFinding(row: SubaccountRow, scanned: ScannedSubaccount | undefined): string | null {
  if (row.status === 'closed' || row.keysAtTwilio !== null) return row.finding;
  if (!scanned) return 'not scanned yet: sprawl unknown';
  return scanned.note ? `keys not listed: ${scanned.note}; sprawl unknown` : row.finding;
}

/**
 * Rows' JSON texts by credential id (RowText), each with the stamp it was rendered at: a page uses a
 * kept one while its stamp is the current one (the page script says which) and the clock is within
 * the instants the text holds for, so a warm page reads no row and builds none.
 * Bounded by two generations of at most max / 2: new rows go to the young one, a row found in the
 * old one moves to the young one, and when the young one is full the old one is dropped whole.
 * A kept row costs about 0.7 KB of heap with its ~0.5 KB text (measured: BENCHMARKS.md, compliance page).
 *
 * A page's rows are kept from their second read (`admit`): a walk over a fleet larger than the
 * bound, each page read once, would otherwise replace every kept row and keep none long enough to
 * be used, and the garbage collector copying and then dropping tens of thousands of rows
 * cost such a page as much again as reading its rows (measured at 100,000 credentials: 3.1 ms of
 * API CPU a page instead of 1.7 ms, with the earlier templates).
 */
export class RowTextCache {
  #young = new Map<string, RowText>();
  #old = new Map<string, RowText>();
  /**
   * The rows read once since the last reset, as bits indexed by a hash of id and stamp: no string or
   * map entry per row read (a map of them cost a cold page more than its Redis reply). A collision
   * keeps a row from its first read, which the bound allows; the bits are cleared once max / 2 are set.
   */
  readonly #once: Uint32Array;
  #onceSet = 0;
  readonly #half: number;

  /** `max` 0 keeps none. */
  constructor(max = 50_000) {
    this.#half = Math.max(0, Math.floor(max / 2));
    let bits = 4096;
    while (bits < this.#half * 8) bits *= 2;
    this.#once = new Uint32Array(bits / 32);
  }

  get size(): number {
    return this.#young.size + this.#old.size;
  }

  /** The kept text of `id` when it was rendered at `stamp` and holds at `now`. */
  get(id: string, stamp: string, now: number): RowText | undefined {
    let t = this.#young.get(id);
    if (!t) {
      t = this.#old.get(id);
      if (!t) return undefined;
      this.#old.delete(id);
      this.#keep(id, t);
    }
    return t.stamp === stamp && now >= t.at && now < t.until ? t : undefined;
  }

  set(id: string, t: RowText): void {
    if (this.#half === 0) return;
    const key = detached(id);
    this.#old.delete(key);
    this.#keep(key, t);
  }

  /**
   * A row just read (not kept): kept if it was read once before at its stamp, or is kept already
   * (a text for another stamp or instant), else remembered as read once. True when it is kept.
   */
  admit(id: string, t: RowText): boolean {
    if (this.#half === 0) return false;
    if (this.#young.has(id) || this.#old.has(id)) {
      this.set(id, t);
      return true;
    }
    const h = (fnv1a(t.stamp, fnv1a(id, 0x811c9dc5)) >>> 0) % (this.#once.length * 32);
    const word = h >>> 5;
    const bit = 1 << (h & 31);
    if ((this.#once[word]! & bit) !== 0) {
      this.set(id, t);
      return true;
    }
    if (this.#onceSet >= this.#half) {
      this.#once.fill(0);
      this.#onceSet = 0;
    }
    this.#once[word]! |= bit;
    this.#onceSet++;
    return false;
  }

  #keep(id: string, t: RowText): void {
    if (this.#young.size >= this.#half && !this.#young.has(id)) {
      this.#old = this.#young;
      this.#young = new Map();
    }
    this.#young.set(id, t);
  }
}

/** FNV-1a over `s`'s code units, from `h`. */
function fnv1a(s: string, h: number): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h;
}

/**
 * `policyJson`: the policy filter's JSON text (the row holds its policy's). A label is found in the
 * labels' JSON text quoted: labels hold no quote, comma or backslash (LABEL), so `"label"` is one
 * whole element; a filter that is no label matches none.
 */
function textMatches(t: RowText, f: ComplianceFilter, policyJson: string | undefined): boolean {
  if (f.overdue !== undefined && t.overdue !== f.overdue) return false;
  if (f.label !== undefined && !(isValidLabel(f.label) && t.labels.includes(`"${f.label}"`))) return false;
  if (policyJson !== undefined && t.policy !== policyJson) return false;
  return true;
}

function textOf(id: string, stored: string, now: number): RowText | null {
  const { accountSid, name } = parseCredentialId(id);
  return storedRowText(accountSid, name, stored, now);
}

function scanTime(s: ScannedSubaccount | undefined): string | null {
  return s ? isoTime(s.scannedAtMs) : null;
}

function isFiltered(f: ComplianceFilter): boolean {
  return f.overdue !== undefined || f.label !== undefined || f.policy !== undefined;
}

function matches(row: CredentialRow, entry: FleetEntry | undefined, f: ComplianceFilter): boolean {
  if (f.overdue !== undefined && row.overdue !== f.overdue) return false;
  if (f.label !== undefined && !(entry?.labels ?? row.labels).includes(f.label)) return false;
  if (f.policy !== undefined && row.policy !== f.policy) return false;
  return true;
}

function sidOf(credentialId: string): string {
  return parseCredentialId(credentialId).accountSid;
}

/** A lexical index's members in order, read a page at a time. */
async function* lexPages(redis: Redis, key: string, page = 1000): AsyncGenerator<string> {
  let min = '-';
  for (;;) {
    const ids = await redis.zrangebylex(key, min, '+', 'LIMIT', 0, page);
    yield* ids;
    if (ids.length < page) return;
    min = `(${ids.at(-1)}`;
  }
}
