import type { SecretEntry, SecretStore, StoredVersion } from '../secret-store.ts';
import { StoreError } from '../store-error.ts';
import { credentialFromObject, plainCredential } from '../../src/domain/secret.ts';
import type { TwilioApiKeyCredential } from '../../src/domain/secret.ts';
import type { VaultAuth, VaultRequest } from './auth.ts';
import { isCasMismatch, toStoreError, vaultBody, vaultStatus } from './errors.ts';
import type { VaultCall, VaultErrorContext } from './errors.ts';

/** Every write re-reads and retries after losing a check-and-set race; this bounds the retries. */
const MAX_ROUNDS = 8;
const NONE = 'none';

export interface VaultStoreDeps {
  request: VaultRequest;
  auth: VaultAuth;
  mount: string;
  ctx: VaultErrorContext;
}

interface KvRead {
  /** The version read (for a deleted or destroyed version too); 0 when the key does not exist. */
  version: number;
  /** The data of a live version; undefined when deleted, destroyed or absent. */
  data?: Record<string, unknown>;
  custom: Record<string, string>;
}

interface MainState {
  version: number;
  current?: TwilioApiKeyCredential;
  custom: Record<string, string>;
}

interface PendingState {
  version: number;
  credential?: TwilioApiKeyCredential;
  rotationId?: string;
  custom: Record<string, string>;
}

/**
 * KV v2 layout of one secret path `p`:
 *  - current  = the latest live version of `<mount>/data/p` (what applications read; every write uses cas);
 *  - pending  = the latest live version of `<mount>/data/p/pending`, whose data carries `rotationId`
 *               next to the credential (written in the same cas-checked call, so the two cannot
 *               disagree); `custom_metadata.rotation_id` on its metadata mirrors it for operators;
 *  - previous = the version of `p` named by `custom_metadata.previous_version` on `<mount>/metadata/p`.
 *
 * The custom_metadata "notes" are written after the data write they describe, so a crash can leave
 * them one write behind: when `current_version` is the version before the latest, that version is
 * the previous one. Every write repairs stale notes.
 */
export class VaultStore implements SecretStore {
  readonly kind = 'vault' as const;
  readonly #request: VaultRequest;
  readonly #auth: VaultAuth;
  readonly #mount: string;
  readonly #ctx: VaultErrorContext;

  constructor(deps: VaultStoreDeps) {
    this.#request = deps.request;
    this.#auth = deps.auth;
    this.#mount = deps.mount;
    this.#ctx = deps.ctx;
  }

  async readCurrent(path: string): Promise<TwilioApiKeyCredential | undefined> {
    const p = normalize(path);
    const r = await this.#readKv(p, 'read the current credential');
    return r.data ? toCredential(r.data, this.#dataPath(p), r.version) : undefined;
  }

  async read(path: string): Promise<SecretEntry> {
    const p = normalize(path);
    const main = await this.#readMain(p);
    const pending = await this.#readPending(p);
    const entry: SecretEntry = {};
    const notes = readNotes(main);
    if (main.current) entry.current = stored(main.current, notes.currentVersion === main.version ? notes.currentRotationId : undefined);
    const prevVersion = previousVersion(main);
    if (prevVersion !== undefined && prevVersion !== main.version) {
      const prev = await this.#readKv(p, 'read the previous credential', prevVersion);
      // Notes one write behind describe the previous version as their current one.
      const rotationId = notes.currentVersion === main.version ? notes.previousRotationId : notes.currentVersion === prevVersion ? notes.currentRotationId : undefined;
      if (prev.data) entry.previous = stored(toCredential(prev.data, this.#dataPath(p), prevVersion), rotationId);
    }
    // A pending equal to current is the tail of an interrupted promotion, not a stage of its own.
    if (pending.credential && pending.credential.apiKeySid !== main.current?.apiKeySid) {
      entry.pending = stored(pending.credential, pending.rotationId);
    }
    return entry;
  }

  async putPending(path: string, rotationId: string, credential: TwilioApiKeyCredential): Promise<void> {
    const p = normalize(path);
    await this.#converge(p, 'putPending', async () => {
      const pending = await this.#readPending(p);
      if (pending.credential && pending.rotationId === rotationId) {
        if (!sameCredential(pending.credential, credential)) {
          throw new StoreError('store_conflict', `rotation ${rotationId} already staged a different credential at ${p}`);
        }
        if (pending.custom.rotation_id !== rotationId) await this.#writePendingNotes(p, pending.custom, rotationId);
        return 'done';
      }
      // Promoted already (the pending path was cleared afterwards): staging it again would be stale.
      const main = await this.#readMain(p);
      if (main.current && sameCredential(main.current, credential)) return 'done';
      const written = await this.#writeData(pendingPath(p), { ...plainCredential(credential), rotationId }, pending.version, 'write the pending credential');
      if (written === undefined) return 'again';
      await this.#writePendingNotes(p, pending.custom, rotationId);
      return 'done';
    });
  }

  async promotePending(path: string, rotationId: string, apiKeySid: string): Promise<void> {
    const p = normalize(path);
    await this.#converge(p, 'promotePending', async () => {
      const main = await this.#readMain(p);
      const pending = await this.#readPending(p);
      if (main.current?.apiKeySid === apiKeySid) {
        // Promoted already; finish what an interrupted promotion left: the notes, then the pending version.
        const notes = readNotes(main);
        if (notes.currentVersion !== main.version) {
          const prev = await this.#previousCredential(p, main);
          await this.#writeNotes(p, main, {
            currentVersion: main.version,
            currentKeySid: apiKeySid,
            rotationId,
            previousVersion: prev?.version,
            previousKeySid: prev?.credential.apiKeySid,
            previousRotationId: notes.currentVersion === main.version - 1 ? notes.currentRotationId : undefined,
          });
        }
        if (pending.credential && (pending.rotationId === rotationId || pending.credential.apiKeySid === apiKeySid)) {
          await this.#deleteVersion(pendingPath(p), pending.version, 'clear the promoted pending credential');
        }
        return 'done';
      }
      if (!pending.credential || pending.rotationId !== rotationId || pending.credential.apiKeySid !== apiKeySid) {
        const why = !pending.credential ? 'nothing is pending' : `the pending credential is ${pending.credential.apiKeySid} of rotation ${pending.rotationId ?? 'unknown'}`;
        throw new StoreError('store_state', `no pending credential ${apiKeySid} of rotation ${rotationId} at ${p} to promote (${why})`);
      }
      const newVersion = await this.#writeData(p, plainCredential(pending.credential), main.version, 'promote the pending credential to current');
      if (newVersion === undefined) return 'again';
      const notes = readNotes(main);
      await this.#writeNotes(p, main, {
        currentVersion: newVersion,
        currentKeySid: apiKeySid,
        rotationId,
        previousVersion: main.current ? main.version : undefined,
        previousKeySid: main.current?.apiKeySid,
        previousRotationId: main.current && notes.currentVersion === main.version ? notes.currentRotationId : undefined,
      });
      await this.#deleteVersion(pendingPath(p), pending.version, 'clear the promoted pending credential');
      return 'done';
    });
  }

  async discardPending(path: string, rotationId: string): Promise<void> {
    const p = normalize(path);
    const pending = await this.#readPending(p);
    // Deleting that exact version (not "the latest") leaves alone a pending another rotation wrote meanwhile.
    if (pending.credential && pending.rotationId === rotationId) await this.#deleteVersion(pendingPath(p), pending.version, 'discard the pending credential');
  }

  async restorePrevious(path: string, newKeySid: string): Promise<void> {
    const p = normalize(path);
    await this.#converge(p, 'restorePrevious', async () => {
      const main = await this.#readMain(p);
      const prev = await this.#previousCredential(p, main);
      const notes = readNotes(main);
      if (main.current?.apiKeySid !== newKeySid) {
        // A restore interrupted before its notes leave the new key looking like the previous one.
        if (prev?.credential.apiKeySid === newKeySid && main.current) {
          await this.#writeNotes(p, main, { currentVersion: main.version, currentKeySid: main.current.apiKeySid, rotationId: notes.currentRotationId });
        }
        return 'done';
      }
      if (!prev) {
        // Rolling back a bootstrap: no credential to return to, so current goes away (soft delete, recoverable).
        await this.#deleteVersion(p, main.version, 'remove the bootstrap credential');
        return 'done';
      }
      const newVersion = await this.#writeData(p, plainCredential(prev.credential), main.version, 'restore the previous credential as current');
      if (newVersion === undefined) return 'again';
      await this.#writeNotes(p, main, { currentVersion: newVersion, currentKeySid: prev.credential.apiKeySid, rotationId: notes.previousRotationId });
      return 'done';
    });
  }

  async dropPrevious(path: string, apiKeySid: string): Promise<void> {
    const p = normalize(path);
    const main = await this.#readMain(p);
    const prev = await this.#previousCredential(p, main);
    if (!main.current || prev?.credential.apiKeySid !== apiKeySid) return;
    await this.#writeNotes(p, main, { currentVersion: main.version, currentKeySid: main.current.apiKeySid, rotationId: readNotes(main).currentRotationId });
  }

  async check(): Promise<void> {
    const health = (await this.#call({ method: 'GET', path: 'sys/health', capabilities: [], purpose: 'check health' }, { anonymous: true })).body as
      | { initialized?: unknown; sealed?: unknown }
      | undefined;
    if (health?.sealed === true) throw new StoreError('store_unavailable', `Vault at ${this.#ctx.addr} is sealed: unseal it`);
    if (health?.initialized === false) throw new StoreError('store_unavailable', `Vault at ${this.#ctx.addr} is not initialized`);
    // The endpoint the vault CLI uses to detect KV versions; any token with a capability under the mount may read it.
    const m = this.#mount;
    const mounts = await this.#call(
      { method: 'GET', path: `sys/internal/ui/mounts/${m}`, capabilities: ['read'], purpose: `use the KV mount "${m}"` },
      { allowNotFound: true, tolerate: [400, 404, 405] },
    ).catch((err: unknown) => {
      if (!(err instanceof StoreError) || err.code !== 'store_permission') throw err;
      throw new StoreError(
        'store_permission',
        `Vault refused Rotator's token for the KV mount "${m}": the token is invalid, expired or revoked, or its policies grant nothing under ${m}/. ` +
          `Rotator needs "read", "create", "update" on ${m}/data/<secret paths> (and their /pending children), "create", "update" on ${m}/metadata/<same paths> and "update" on ${m}/delete/<same paths>`,
        err.cause,
      );
    });
    const info = (mounts.body as { data?: { type?: unknown; options?: { version?: unknown } | null } } | undefined)?.data;
    if (mounts.kind !== 'ok' || !info) return;
    if (info.type !== 'kv' || String(info.options?.version ?? '1') !== '2') {
      throw new StoreError(
        'store_config',
        `Vault mount "${this.#mount}" is ${info.type === 'kv' ? 'KV version 1' : `a ${String(info.type)} engine`}, not KV v2: set VAULT_KV_MOUNT to a KV v2 mount (vault secrets enable -path=<mount> kv-v2)`,
      );
    }
  }

  async close(): Promise<void> {
    this.#auth.close();
  }

  #dataPath(p: string): string {
    return `${this.#mount}/data/${p}`;
  }

  async #converge(p: string, what: string, round: () => Promise<'done' | 'again'>): Promise<void> {
    for (let i = 0; i < MAX_ROUNDS; i++) {
      if ((await round()) === 'done') return;
    }
    throw new StoreError('store_conflict', `${what} on ${p} did not settle after ${MAX_ROUNDS} rounds: other writers keep changing it; retry`);
  }

  async #call(
    call: VaultCall,
    opts: { json?: unknown; query?: string; allowNotFound?: boolean; allowCas?: boolean; anonymous?: boolean; tolerate?: number[] } = {},
  ): Promise<{ kind: 'ok' | 'not_found' | 'cas' | 'tolerated'; body?: unknown }> {
    for (let attempt = 0; ; attempt++) {
      const token = opts.anonymous ? undefined : await this.#auth.token();
      try {
        const body = await this.#request({
          method: call.method,
          path: call.path,
          ...(opts.query ? { query: opts.query } : {}),
          ...(opts.json !== undefined ? { json: opts.json } : {}),
          ...(token ? { token } : {}),
        });
        return { kind: 'ok', body };
      } catch (err) {
        const status = vaultStatus(err);
        if (status === 404 && opts.allowNotFound) return { kind: 'not_found', body: vaultBody(err) };
        if (opts.allowCas && isCasMismatch(err)) return { kind: 'cas' };
        if (status !== undefined && opts.tolerate?.includes(status)) return { kind: 'tolerated' };
        // An AppRole token can die early (revoked, max TTL): log in again once before reporting.
        if (token && (status === 403 || status === 401) && attempt === 0 && this.#auth.canLogin) {
          this.#auth.invalidate(token);
          continue;
        }
        throw toStoreError(err, call, this.#ctx);
      }
    }
  }

  async #readKv(p: string, purpose: string, version?: number): Promise<KvRead> {
    const r = await this.#call(
      { method: 'GET', path: this.#dataPath(p), capabilities: ['read'], purpose },
      { allowNotFound: true, ...(version !== undefined ? { query: `?version=${version}` } : {}) },
    );
    // A deleted or destroyed version answers 404 with its metadata; a missing key answers 404 with none.
    const data = (r.body as { data?: { data?: unknown; metadata?: { version?: unknown; custom_metadata?: unknown } } } | undefined)?.data;
    const out: KvRead = {
      version: typeof data?.metadata?.version === 'number' ? data.metadata.version : 0,
      custom: stringMap(data?.metadata?.custom_metadata),
    };
    if (r.kind === 'ok' && isObject(data?.data)) out.data = data.data;
    return out;
  }

  async #readMain(p: string): Promise<MainState> {
    const r = await this.#readKv(p, 'read the current credential');
    return { version: r.version, custom: r.custom, ...(r.data ? { current: toCredential(r.data, this.#dataPath(p), r.version) } : {}) };
  }

  async #readPending(p: string): Promise<PendingState> {
    const r = await this.#readKv(pendingPath(p), 'read the pending credential');
    const out: PendingState = { version: r.version, custom: r.custom };
    if (r.data) {
      out.credential = toCredential(r.data, this.#dataPath(pendingPath(p)), r.version);
      const rotationId = typeof r.data.rotationId === 'string' ? r.data.rotationId : r.custom.rotation_id;
      if (rotationId) out.rotationId = rotationId;
    }
    return out;
  }

  async #previousCredential(p: string, main: MainState): Promise<{ version: number; credential: TwilioApiKeyCredential } | undefined> {
    const v = previousVersion(main);
    if (v === undefined || v === main.version) return undefined;
    const r = await this.#readKv(p, 'read the previous credential', v);
    return r.data ? { version: v, credential: toCredential(r.data, this.#dataPath(p), v) } : undefined;
  }

  /** A cas-checked write; the new version number, or undefined when another writer got there first. */
  async #writeData(p: string, data: Record<string, string>, cas: number, purpose: string): Promise<number | undefined> {
    const r = await this.#call(
      { method: 'POST', path: this.#dataPath(p), capabilities: cas === 0 ? ['create'] : ['update'], purpose },
      { json: { data, options: { cas } }, allowCas: true },
    );
    if (r.kind === 'cas') return undefined;
    const version = (r.body as { data?: { version?: unknown } } | undefined)?.data?.version;
    if (typeof version !== 'number') throw new StoreError('store_unavailable', `Vault did not return the version it wrote at ${this.#dataPath(p)}`);
    return version;
  }

  async #deleteVersion(p: string, version: number, purpose: string): Promise<void> {
    await this.#call({ method: 'POST', path: `${this.#mount}/delete/${p}`, capabilities: ['update'], purpose }, { json: { versions: [version] } });
  }

  async #writePendingNotes(p: string, existing: Record<string, string>, rotationId: string): Promise<void> {
    await this.#call(
      { method: 'POST', path: `${this.#mount}/metadata/${pendingPath(p)}`, capabilities: ['create', 'update'], purpose: 'label the pending credential with its rotation' },
      { json: { custom_metadata: { ...existing, managed_by: 'rotator', rotation_id: rotationId } } },
    );
  }

  async #writeNotes(
    p: string,
    main: MainState,
    n: { currentVersion: number; currentKeySid: string; rotationId?: string; previousVersion?: number; previousKeySid?: string; previousRotationId?: string },
  ): Promise<void> {
    // custom_metadata replaces the whole map on POST: keep keys other tools put there. Vault rejects empty values.
    const custom_metadata = {
      ...main.custom,
      managed_by: 'rotator',
      current_version: String(n.currentVersion),
      current_key_sid: n.currentKeySid,
      rotation_id: n.rotationId ?? NONE,
      previous_version: n.previousVersion !== undefined ? String(n.previousVersion) : NONE,
      previous_key_sid: n.previousKeySid ?? NONE,
      previous_rotation_id: n.previousRotationId ?? NONE,
    };
    await this.#call(
      { method: 'POST', path: `${this.#mount}/metadata/${p}`, capabilities: ['create', 'update'], purpose: 'record which versions are current and previous' },
      { json: { custom_metadata } },
    );
  }
}

interface Notes {
  currentVersion?: number;
  previousVersion?: number;
  currentRotationId?: string;
  previousRotationId?: string;
}

function readNotes(main: MainState): Notes {
  const c = main.custom;
  const out: Notes = {};
  const cv = versionNumber(c.current_version);
  const pv = versionNumber(c.previous_version);
  if (cv !== undefined) out.currentVersion = cv;
  if (pv !== undefined) out.previousVersion = pv;
  if (c.rotation_id && c.rotation_id !== NONE) out.currentRotationId = c.rotation_id;
  if (c.previous_rotation_id && c.previous_rotation_id !== NONE) out.previousRotationId = c.previous_rotation_id;
  return out;
}

/**
 * Which version of `p` is previous. Notes written for the latest version say so directly; notes one
 * write behind (a crash between a data write and its notes) describe the version that was current
 * before that write, which is then the previous one. Without usable notes, the version before the
 * latest is the best guess (SPEC: "the earlier version of <path>").
 */
function previousVersion(main: MainState): number | undefined {
  const notes = readNotes(main);
  const latest = main.version;
  if (notes.currentVersion === latest) return notes.previousVersion;
  if (notes.currentVersion !== undefined && notes.currentVersion === latest - 1) return notes.currentVersion;
  return latest > 1 ? latest - 1 : undefined;
}

function normalize(path: string): string {
  const segments = path.split('/').filter((s) => s.length > 0);
  if (segments.length === 0 || segments.some((s) => s === '.' || s === '..')) {
    throw new StoreError('store_config', `"${path}" is not a usable Vault secret path (check SECRET_PATH_TEMPLATE)`);
  }
  return segments.map(encodeURIComponent).join('/');
}

function pendingPath(p: string): string {
  return `${p}/pending`;
}

function stored(credential: TwilioApiKeyCredential, rotationId: string | undefined): StoredVersion {
  return rotationId ? { credential, rotationId } : { credential };
}

function toCredential(data: Record<string, unknown>, path: string, version: number): TwilioApiKeyCredential {
  try {
    return credentialFromObject(data);
  } catch {
    throw new StoreError('store_corrupt', `${path} version ${version} is not a Twilio API key credential: its data must hold accountSid, apiKeySid and apiKeySecret`);
  }
}

function sameCredential(a: TwilioApiKeyCredential, b: TwilioApiKeyCredential): boolean {
  return a.accountSid === b.accountSid && a.apiKeySid === b.apiKeySid && a.apiKeySecret.equals(b.apiKeySecret);
}

function versionNumber(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringMap(v: unknown): Record<string, string> {
  if (!isObject(v)) return {};
  return Object.fromEntries(Object.entries(v).filter((e): e is [string, string] => typeof e[1] === 'string'));
}
