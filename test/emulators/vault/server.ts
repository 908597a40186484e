/**
 * A HashiCorp Vault emulator for the parts Rotator uses: KV v2 (data, metadata, delete, undelete,
 * destroy, config; check-and-set exactly as the kv plugin's path_data.go; `?list=true` listing,
 * since Node's HTTP server cannot receive the LIST method), token auth with path policies, AppRole
 * login, token lookup-self / renew-self, sys/health, sys/internal/ui/mounts and namespaces
 * (X-Vault-Namespace), each namespace holding its own data.
 *
 * Error bodies are Vault's: `{"errors": [...]}`; a missing path is 404 `{"errors":[]}`; a deleted or
 * destroyed version is 404 with its metadata.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes, randomUUID } from 'node:crypto';

export type Capability = 'create' | 'read' | 'update' | 'patch' | 'delete' | 'list' | 'sudo' | 'deny';

export interface PolicyRule {
  /** A Vault policy path: exact, `prefix*`, or with `+` for one segment. */
  path: string;
  capabilities: Capability[];
}

export interface MountOptions {
  path: string;
  /** Engine-wide max_versions (0 = Vault's default, 10). */
  maxVersions?: number;
  casRequired?: boolean;
}

export interface VaultEmulatorOptions {
  port?: number;
  host?: string;
  /** Id of the root token (default 'root'). */
  rootToken?: string;
  /** KV v2 mounts present in every namespace (default: `secret`). */
  mounts?: MountOptions[];
  /** Where AppRole is mounted (default 'approle'). */
  approleMount?: string;
  policies?: Record<string, PolicyRule[]>;
  latencyMs?: number;
}

export interface TokenOptions {
  policies: string[];
  /** Seconds; 0 = never expires. */
  ttl?: number;
  /** Seconds from creation beyond which renewals cannot extend; 0 = none. */
  maxTtl?: number;
  renewable?: boolean;
  id?: string;
}

export interface AppRoleOptions {
  roleName?: string;
  roleId?: string;
  secretId?: string;
  policies: string[];
  tokenTtl?: number;
  tokenMaxTtl?: number;
}

export type VaultFailKind = 'internal' | 'unavailable' | 'reset';

export interface VaultRequestLogEntry {
  method: string;
  path: string;
  namespace: string;
  status: number | 'reset';
}

export interface KvVersionView {
  version: number;
  data?: Record<string, unknown>;
  deleted: boolean;
  destroyed: boolean;
}

export interface KvKeyView {
  currentVersion: number;
  customMetadata: Record<string, string> | null;
  versions: KvVersionView[];
}

export interface VaultEmulator {
  readonly url: string;
  readonly rootToken: string;
  close(): Promise<void>;
  setPolicy(name: string, rules: PolicyRule[]): void;
  createToken(opts: TokenOptions): string;
  revokeToken(token: string): void;
  /** Revoke every token except the root token. */
  revokeAllTokens(): void;
  /** Ids of the live non-root tokens (to check none leaks into logs or errors). */
  tokens(): string[];
  /** Registers an AppRole; returns its role id and one secret id. */
  addAppRole(opts: AppRoleOptions): { roleId: string; secretId: string };
  /** The next `count` requests (after authentication) fail: 500, 503 or a connection reset. */
  failNext(count: number, kind: VaultFailKind): void;
  /** While down, every request gets 503 "Vault is sealed" (sys/health a sealed status), or a reset. */
  setDown(down: boolean, mode?: 'sealed' | 'reset'): void;
  /** 403 on every KV write, whatever the token. */
  denyWrites(deny: boolean): void;
  /** After `writes` more KV writes succeed, the next is dropped (or applied with its answer lost) and every request fails until heal(). */
  crashAfterWrites(writes: number, opts?: { applyLast?: boolean }): void;
  crashed(): boolean;
  heal(): void;
  /** Inspect a KV key (raw state, for tests). */
  inspect(path: string, opts?: { mount?: string; namespace?: string }): KvKeyView | undefined;
  readonly requests: readonly VaultRequestLogEntry[];
  readonly stats: { logins: number; renewals: number };
}

interface Token {
  id: string;
  accessor: string;
  policies: string[];
  root: boolean;
  ttlS: number;
  createdAt: number;
  expiresAt: number;
  maxExpiresAt: number;
  renewable: boolean;
}

interface KvVersion {
  createdTime: string;
  deletionTime: string;
  destroyed: boolean;
  data?: Record<string, unknown>;
}

interface KvKey {
  currentVersion: number;
  oldestVersion: number;
  createdTime: string;
  updatedTime: string;
  maxVersions: number;
  casRequired: boolean;
  customMetadata: Record<string, string> | null;
  versions: Map<number, KvVersion>;
}

interface KvMount {
  maxVersions: number;
  casRequired: boolean;
  keys: Map<string, KvKey>;
}

class VaultError extends Error {
  constructor(
    readonly status: number,
    readonly errors: string[],
    readonly body?: unknown,
  ) {
    super(errors.join('; '));
  }
}

const DEFAULT_MAX_VERSIONS = 10;
const REQUEST_LOG_LIMIT = 10_000;
const ALL_CAPABILITIES: Capability[] = ['create', 'read', 'update', 'patch', 'delete', 'list', 'sudo'];

type Json = Record<string, unknown>;

export async function startVaultEmulator(opts: VaultEmulatorOptions = {}): Promise<VaultEmulator> {
  const rootToken = opts.rootToken ?? 'root';
  const approleMount = opts.approleMount ?? 'approle';
  const mountOptions = opts.mounts ?? [{ path: 'secret' }];
  const policies = new Map<string, PolicyRule[]>(Object.entries(opts.policies ?? {}));
  const tokens = new Map<string, Token>();
  const roles = new Map<string, { name: string; secretIds: Set<string>; policies: string[]; tokenTtl: number; tokenMaxTtl: number }>();
  const namespaces = new Map<string, Map<string, KvMount>>();
  const requests: VaultRequestLogEntry[] = [];
  const stats = { logins: 0, renewals: 0 };

  let down: false | 'sealed' | 'reset' = false;
  let writesDenied = false;
  const failQueue: VaultFailKind[] = [];
  let crash: { remaining: number; applyLast: boolean; fired: boolean } | undefined;

  const nowMs = (): number => Date.now();
  const iso = (): string => new Date().toISOString();

  function issueToken(o: TokenOptions & { root?: boolean }): Token {
    const t = nowMs();
    const token: Token = {
      id: o.id ?? `hvs.${randomBytes(18).toString('base64url')}`,
      accessor: randomBytes(12).toString('base64url'),
      policies: o.root ? ['root'] : [...o.policies],
      root: o.root ?? false,
      ttlS: o.ttl ?? 0,
      createdAt: t,
      expiresAt: o.ttl ? t + o.ttl * 1000 : Number.POSITIVE_INFINITY,
      maxExpiresAt: o.maxTtl ? t + o.maxTtl * 1000 : Number.POSITIVE_INFINITY,
      renewable: o.renewable ?? (o.ttl ?? 0) > 0,
    };
    tokens.set(token.id, token);
    return token;
  }
  issueToken({ id: rootToken, policies: [], root: true });

  function mountsOf(namespace: string): Map<string, KvMount> {
    let m = namespaces.get(namespace);
    if (!m) {
      m = new Map(mountOptions.map((o) => [o.path.replace(/^\/+|\/+$/g, ''), { maxVersions: o.maxVersions ?? 0, casRequired: o.casRequired ?? false, keys: new Map() }]));
      namespaces.set(namespace, m);
    }
    return m;
  }

  function log(entry: VaultRequestLogEntry): void {
    requests.push(entry);
    if (requests.length > REQUEST_LOG_LIMIT) requests.splice(0, requests.length - REQUEST_LOG_LIMIT);
  }

  function liveToken(id: string | undefined): Token {
    const t = id ? tokens.get(id) : undefined;
    if (!t || t.expiresAt <= nowMs()) throw new VaultError(403, ['permission denied']);
    return t;
  }

  function capabilities(token: Token, path: string): Set<Capability> {
    if (token.root) return new Set(ALL_CAPABILITIES);
    let best: { score: number; caps: Set<Capability> } | undefined;
    for (const name of token.policies) {
      for (const rule of policies.get(name) ?? []) {
        const score = matchScore(rule.path, path);
        if (score < 0) continue;
        if (!best || score > best.score) best = { score, caps: new Set(rule.capabilities) };
        else if (score === best.score) for (const c of rule.capabilities) best.caps.add(c);
      }
    }
    if (!best || best.caps.has('deny')) return new Set();
    return best.caps;
  }

  function demand(token: Token, path: string, needed: Capability): void {
    if (!capabilities(token, path).has(needed)) throw new VaultError(403, ['permission denied']);
  }

  function anyCapabilityUnder(token: Token, prefix: string): boolean {
    if (token.root) return true;
    return token.policies.some((name) => (policies.get(name) ?? []).some((r) => r.path.startsWith(prefix) && !r.capabilities.includes('deny') && r.capabilities.length > 0));
  }

  function envelope(data: unknown, extra: Json = {}): Json {
    return { request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, data, wrap_info: null, warnings: null, auth: null, mount_type: 'kv', ...extra };
  }

  function versionMetadata(key: KvKey, v: number, kv: KvVersion): Json {
    return { created_time: kv.createdTime, custom_metadata: key.customMetadata, deletion_time: kv.deletionTime, destroyed: kv.destroyed, version: v };
  }

  function isDeleted(kv: KvVersion): boolean {
    return kv.deletionTime !== '' && Date.parse(kv.deletionTime) <= nowMs();
  }

  function parseVersions(raw: unknown): number[] {
    const list = typeof raw === 'string' ? raw.split(',') : Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
    return list.map((x) => Number(x)).filter((n) => Number.isInteger(n) && n > 0);
  }

  function validateCustomMetadata(cm: Record<string, string>): void {
    const errs: string[] = [];
    const keys = Object.keys(cm);
    if (keys.length > 64) throw new VaultError(400, [`custom_metadata validation failed: payload must contain at most 64 keys, provided ${keys.length}`]);
    for (const [k, v] of Object.entries(cm)) {
      if (k.length === 0 || k.length > 128) errs.push(`custom_metadata validation failed: length of key "${k}" is ${k.length} but must be 0 < len(key) <= 128`);
      if (v.length === 0 || v.length > 512) errs.push(`custom_metadata validation failed: length of value for key "${k}" is ${v.length} but must be 0 < len(value) <= 512`);
    }
    if (errs.length > 0) throw new VaultError(400, [`${errs.length} error${errs.length > 1 ? 's' : ''} occurred:\n\t* ${errs.join('\n\t* ')}\n\n`]);
  }

  function toStringMap(raw: unknown, dropNulls: boolean): Record<string, string | null> {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new VaultError(400, ['custom_metadata must be a map']);
    const out: Record<string, string | null> = {};
    for (const [k, v] of Object.entries(raw)) {
      if (v === null && dropNulls) out[k] = null;
      else if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[k] = String(v);
      else throw new VaultError(400, [`custom_metadata validation failed: value for key "${k}" is not a string`]);
    }
    return out;
  }

  /** KV v2 under one mount; returns [status, body]. `rest` is the path after the mount. */
  function kv(mount: KvMount, mountPath: string, token: Token, method: string, rest: string, query: URLSearchParams, body: Json, contentType: string): [number, unknown] {
    const slash = rest.indexOf('/');
    const kind = slash < 0 ? rest : rest.slice(0, slash);
    const key = slash < 0 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
    const aclPath = `${mountPath}/${rest}`;
    const isWrite = method !== 'GET';
    if (isWrite && writesDenied) throw new VaultError(403, ['permission denied']);

    if (kind === 'config' && key === '') {
      if (method === 'GET') {
        demand(token, aclPath, 'read');
        return [200, envelope({ cas_required: mount.casRequired, delete_version_after: '0s', max_versions: mount.maxVersions })];
      }
      demand(token, aclPath, 'update');
      if (body.max_versions !== undefined) mount.maxVersions = Number(body.max_versions);
      if (body.cas_required !== undefined) mount.casRequired = body.cas_required === true;
      return [204, undefined];
    }

    if (kind === 'metadata' && method === 'GET' && (query.get('list') === 'true' || query.get('list') === '1')) {
      demand(token, aclPath, 'list');
      const prefix = key === '' ? '' : `${key}/`;
      const found = new Set<string>();
      for (const k of mount.keys.keys()) {
        if (!k.startsWith(prefix)) continue;
        const restOfKey = k.slice(prefix.length);
        const i = restOfKey.indexOf('/');
        found.add(i < 0 ? restOfKey : restOfKey.slice(0, i + 1));
      }
      if (found.size === 0) throw new VaultError(404, []);
      return [200, envelope({ keys: [...found].sort() })];
    }

    if (key === '') throw new VaultError(404, [`no handler for route "${aclPath}". route entry not found.`]);
    const existing = mount.keys.get(key);

    switch (`${kind} ${method}`) {
      case 'data GET': {
        demand(token, aclPath, 'read');
        if (!existing) throw new VaultError(404, []);
        const v = query.has('version') && Number(query.get('version')) > 0 ? Number(query.get('version')) : existing.currentVersion;
        const ver = existing.versions.get(v);
        if (!ver) throw new VaultError(404, []);
        const metadata = versionMetadata(existing, v, ver);
        if (isDeleted(ver) || ver.destroyed) throw new VaultError(404, [], envelope({ data: null, metadata }));
        return [200, envelope({ data: ver.data ?? {}, metadata })];
      }
      case 'data POST':
      case 'data PUT': {
        demand(token, aclPath, existing ? 'update' : 'create');
        const data = body.data;
        if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new VaultError(400, ['no data provided']);
        const k: KvKey = existing ?? { currentVersion: 0, oldestVersion: 0, createdTime: iso(), updatedTime: iso(), maxVersions: 0, casRequired: false, customMetadata: null, versions: new Map() };
        const options = body.options as Json | undefined;
        if (options && options.cas !== undefined) {
          const cas = Number(options.cas);
          if (!Number.isInteger(cas)) throw new VaultError(400, ['error parsing check-and-set parameter']);
          if (cas !== k.currentVersion) throw new VaultError(400, ['check-and-set parameter did not match the current version']);
        } else if (mount.casRequired || k.casRequired) {
          throw new VaultError(400, ['check-and-set parameter required for this call']);
        }
        const created = iso();
        k.currentVersion++;
        k.versions.set(k.currentVersion, { createdTime: created, deletionTime: '', destroyed: false, data: structuredClone(data as Json) });
        k.updatedTime = created;
        const max = Math.max(k.maxVersions, mount.maxVersions) || DEFAULT_MAX_VERSIONS;
        if (k.currentVersion - k.oldestVersion >= max) {
          const toDelete = k.currentVersion - max;
          for (let i = k.oldestVersion; i <= toDelete; i++) k.versions.delete(i);
          k.oldestVersion = toDelete + 1;
        }
        mount.keys.set(key, k);
        return [200, envelope(versionMetadata(k, k.currentVersion, k.versions.get(k.currentVersion) as KvVersion))];
      }
      case 'data DELETE': {
        demand(token, aclPath, 'delete');
        const latest = existing?.versions.get(existing.currentVersion);
        if (latest && !latest.destroyed && !isDeleted(latest)) latest.deletionTime = iso();
        return [204, undefined];
      }
      case 'metadata GET': {
        demand(token, aclPath, 'read');
        if (!existing) throw new VaultError(404, []);
        const versions: Json = {};
        for (const [n, v] of existing.versions) versions[String(n)] = { created_time: v.createdTime, deletion_time: v.deletionTime, destroyed: v.destroyed };
        return [
          200,
          envelope({
            cas_required: existing.casRequired,
            created_time: existing.createdTime,
            current_version: existing.currentVersion,
            custom_metadata: existing.customMetadata,
            delete_version_after: '0s',
            max_versions: existing.maxVersions,
            oldest_version: existing.oldestVersion,
            updated_time: existing.updatedTime,
            versions,
          }),
        ];
      }
      case 'metadata POST':
      case 'metadata PUT': {
        demand(token, aclPath, existing ? 'update' : 'create');
        const fields = ['max_versions', 'cas_required', 'delete_version_after', 'custom_metadata'].filter((f) => body[f] !== undefined);
        if (fields.length === 0) return [204, undefined];
        let cm: Record<string, string> | undefined;
        if (body.custom_metadata !== undefined) {
          cm = toStringMap(body.custom_metadata, false) as Record<string, string>;
          validateCustomMetadata(cm);
        }
        const k: KvKey = existing ?? { currentVersion: 0, oldestVersion: 0, createdTime: iso(), updatedTime: iso(), maxVersions: 0, casRequired: false, customMetadata: null, versions: new Map() };
        if (body.max_versions !== undefined) k.maxVersions = Number(body.max_versions);
        if (body.cas_required !== undefined) k.casRequired = body.cas_required === true;
        if (cm) k.customMetadata = cm;
        k.updatedTime = iso();
        mount.keys.set(key, k);
        return [204, undefined];
      }
      case 'metadata PATCH': {
        demand(token, aclPath, 'patch');
        if (!contentType.startsWith('application/merge-patch+json')) throw new VaultError(415, ['PATCH requires Content-Type application/merge-patch+json']);
        if (!existing) throw new VaultError(404, []);
        if (body.custom_metadata !== undefined) {
          const patch = toStringMap(body.custom_metadata, true);
          const merged: Record<string, string> = { ...(existing.customMetadata ?? {}) };
          for (const [k, v] of Object.entries(patch)) {
            if (v === null) delete merged[k];
            else merged[k] = v;
          }
          validateCustomMetadata(merged);
          existing.customMetadata = merged;
        }
        if (body.max_versions !== undefined) existing.maxVersions = Number(body.max_versions);
        if (body.cas_required !== undefined) existing.casRequired = body.cas_required === true;
        existing.updatedTime = iso();
        return [204, undefined];
      }
      case 'metadata DELETE': {
        demand(token, aclPath, 'delete');
        mount.keys.delete(key);
        return [204, undefined];
      }
      case 'delete POST':
      case 'delete PUT':
      case 'undelete POST':
      case 'undelete PUT':
      case 'destroy POST':
      case 'destroy PUT': {
        demand(token, aclPath, 'update');
        const versions = parseVersions(body.versions);
        if (versions.length === 0) throw new VaultError(400, ['No version number provided']);
        if (!existing) return [204, undefined];
        for (const n of versions) {
          const v = existing.versions.get(n);
          if (!v || v.destroyed) continue;
          if (kind === 'delete' && !isDeleted(v)) v.deletionTime = iso();
          if (kind === 'undelete') v.deletionTime = '';
          if (kind === 'destroy') {
            v.destroyed = true;
            delete v.data;
          }
        }
        return [204, undefined];
      }
    }
    throw new VaultError(405, ['unsupported operation']);
  }

  function authRoutes(method: string, path: string, headerToken: string | undefined, body: Json): [number, unknown] | undefined {
    if (path === `auth/${approleMount}/login` && (method === 'POST' || method === 'PUT')) {
      const role = typeof body.role_id === 'string' ? roles.get(body.role_id) : undefined;
      if (!role || typeof body.secret_id !== 'string' || !role.secretIds.has(body.secret_id)) throw new VaultError(400, ['invalid role or secret ID']);
      stats.logins++;
      const t = issueToken({ policies: role.policies, ttl: role.tokenTtl, maxTtl: role.tokenMaxTtl, renewable: true });
      const policyList = ['default', ...role.policies];
      return [
        200,
        envelope(null, {
          mount_type: '',
          auth: {
            client_token: t.id,
            accessor: t.accessor,
            policies: policyList,
            token_policies: policyList,
            metadata: { role_name: role.name },
            lease_duration: role.tokenTtl,
            renewable: true,
            entity_id: '',
            token_type: 'service',
            orphan: true,
          },
        }),
      ];
    }
    if (path === 'auth/token/lookup-self' && method === 'GET') {
      const t = liveToken(headerToken);
      return [
        200,
        envelope(
          {
            accessor: t.accessor,
            creation_time: Math.floor(t.createdAt / 1000),
            creation_ttl: t.ttlS,
            display_name: t.root ? 'root' : 'approle',
            entity_id: '',
            expire_time: Number.isFinite(t.expiresAt) ? new Date(t.expiresAt).toISOString() : null,
            explicit_max_ttl: 0,
            id: t.id,
            issue_time: new Date(t.createdAt).toISOString(),
            meta: null,
            num_uses: 0,
            orphan: true,
            path: t.root ? 'auth/token/root' : `auth/${approleMount}/login`,
            policies: t.root ? ['root'] : ['default', ...t.policies],
            renewable: t.renewable,
            ttl: Number.isFinite(t.expiresAt) ? Math.max(0, Math.round((t.expiresAt - nowMs()) / 1000)) : 0,
            type: 'service',
          },
          { mount_type: 'token' },
        ),
      ];
    }
    if (path === 'auth/token/renew-self' && (method === 'POST' || method === 'PUT')) {
      const t = liveToken(headerToken);
      if (!t.renewable || !Number.isFinite(t.expiresAt)) throw new VaultError(400, ['lease is not renewable']);
      const increment = typeof body.increment === 'number' ? body.increment : t.ttlS;
      const ttl = Math.max(0, Math.min(increment * 1000, t.maxExpiresAt - nowMs()));
      t.expiresAt = nowMs() + ttl;
      stats.renewals++;
      const policyList = ['default', ...t.policies];
      return [
        200,
        envelope(null, {
          mount_type: 'token',
          auth: { client_token: t.id, accessor: t.accessor, policies: policyList, token_policies: policyList, lease_duration: Math.round(ttl / 1000), renewable: t.renewable },
        }),
      ];
    }
    if (path === 'auth/token/create' && (method === 'POST' || method === 'PUT')) {
      const parent = liveToken(headerToken);
      if (!parent.root) throw new VaultError(403, ['permission denied']);
      const ttl = typeof body.ttl === 'number' ? body.ttl : 0;
      const t = issueToken({ policies: Array.isArray(body.policies) ? body.policies.map(String) : [], ttl, renewable: body.renewable !== false && ttl > 0 });
      return [200, envelope(null, { mount_type: 'token', auth: { client_token: t.id, accessor: t.accessor, policies: t.policies, lease_duration: ttl, renewable: t.renewable } })];
    }
    return undefined;
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? '/', 'http://emulator');
    const method = req.method ?? 'GET';
    const namespace = String(req.headers['x-vault-namespace'] ?? '').replace(/^\/+|\/+$/g, '');
    const path = url.pathname.replace(/^\/v1\//, '').replace(/^\/+/, '');
    const entry: VaultRequestLogEntry = { method, path, namespace, status: 200 };

    const send = (status: number, body: unknown): void => {
      entry.status = status;
      log(entry);
      if (body === undefined) {
        res.writeHead(status);
        res.end();
        return;
      }
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
      res.end(text);
    };
    const reset = (): void => {
      entry.status = 'reset';
      log(entry);
      req.socket.destroy();
    };

    if (crash?.fired || down === 'reset') return reset();
    if (path === 'sys/health' && (method === 'GET' || method === 'HEAD')) {
      const sealed = down === 'sealed';
      return send(sealed ? 503 : 200, {
        initialized: true,
        sealed,
        standby: false,
        performance_standby: false,
        replication_performance_mode: 'disabled',
        replication_dr_mode: 'disabled',
        server_time_utc: Math.floor(nowMs() / 1000),
        version: '1.17.0+emulator',
        cluster_name: 'vault-emulator',
        cluster_id: 'emulator',
      });
    }
    if (down === 'sealed') return send(503, { errors: ['Vault is sealed'] });
    if (opts.latencyMs) await new Promise((r) => setTimeout(r, opts.latencyMs));

    try {
      if (!url.pathname.startsWith('/v1/')) throw new VaultError(404, []);
      let body: Json = {};
      if (chunks.length > 0) {
        try {
          const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) body = parsed as Json;
        } catch (err) {
          throw new VaultError(400, [`failed to parse JSON input: ${(err as Error).message}`]);
        }
      }
      const headerToken = typeof req.headers['x-vault-token'] === 'string' ? req.headers['x-vault-token'] : undefined;
      const auth = authRoutes(method, path, headerToken, body);
      if (auth) {
        const injected = failQueue.shift();
        if (injected) return injectFailure(injected);
        return send(auth[0], auth[1]);
      }

      const token = liveToken(headerToken);
      if (path.startsWith('sys/internal/ui/mounts/')) {
        const mountName = path.slice('sys/internal/ui/mounts/'.length).split('/')[0] ?? '';
        const mount = mountsOf(namespace).get(mountName);
        if (!mount) throw new VaultError(400, [`no mount found for path "${mountName}"`]);
        if (!anyCapabilityUnder(token, `${mountName}/`)) throw new VaultError(403, ['permission denied']);
        return send(200, envelope({ accessor: `kv_${mountName}`, config: {}, description: 'key/value secret storage', external_entropy_access: false, local: false, options: { version: '2' }, path: `${mountName}/`, seal_wrap: false, type: 'kv', uuid: 'emulator' }, { mount_type: '' }));
      }

      const firstSlash = path.indexOf('/');
      const mountName = firstSlash < 0 ? path : path.slice(0, firstSlash);
      const mount = mountsOf(namespace).get(mountName);
      if (!mount) {
        if (!token.root) throw new VaultError(403, ['permission denied']);
        throw new VaultError(404, [`no handler for route "${path}". route entry not found.`]);
      }
      const injected = failQueue.shift();
      if (injected) return injectFailure(injected);

      const isWrite = method !== 'GET';
      let loseAnswer = false;
      if (isWrite && crash) {
        if (crash.remaining > 0) crash.remaining--;
        else {
          crash.fired = true;
          if (!crash.applyLast) return reset();
          loseAnswer = true;
        }
      }
      let result: [number, unknown];
      try {
        result = kv(mount, mountName, token, method, path.slice(firstSlash + 1), url.searchParams, body, String(req.headers['content-type'] ?? ''));
      } finally {
        if (loseAnswer) reset();
      }
      if (loseAnswer) return;
      return send(result[0], result[1]);
    } catch (err) {
      if (res.destroyed || req.socket.destroyed) return;
      if (err instanceof VaultError) return send(err.status, err.body ?? { errors: err.errors });
      return send(500, { errors: ['internal error'] });
    }

    function injectFailure(kind: VaultFailKind): void {
      if (kind === 'reset') return reset();
      if (kind === 'unavailable') return send(503, { errors: ['Vault is sealed'] });
      return send(500, { errors: ['1 error occurred:\n\t* internal error\n\n'] });
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: ['internal error'] }));
      } else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    url: `http://${host}:${address.port}`,
    rootToken,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    setPolicy(name, rules) {
      policies.set(name, rules);
    },
    createToken(o) {
      return issueToken(o).id;
    },
    revokeToken(token) {
      tokens.delete(token);
    },
    revokeAllTokens() {
      for (const t of [...tokens.values()]) if (!t.root) tokens.delete(t.id);
    },
    tokens() {
      return [...tokens.values()].filter((t) => !t.root).map((t) => t.id);
    },
    addAppRole(o) {
      const roleId = o.roleId ?? randomUUID();
      const secretId = o.secretId ?? randomUUID();
      const existing = roles.get(roleId);
      if (existing) existing.secretIds.add(secretId);
      else roles.set(roleId, { name: o.roleName ?? 'rotator', secretIds: new Set([secretId]), policies: o.policies, tokenTtl: o.tokenTtl ?? 3600, tokenMaxTtl: o.tokenMaxTtl ?? 0 });
      return { roleId, secretId };
    },
    failNext(count, kind) {
      for (let i = 0; i < count; i++) failQueue.push(kind);
    },
    setDown(d, mode = 'sealed') {
      down = d ? mode : false;
    },
    denyWrites(deny) {
      writesDenied = deny;
    },
    crashAfterWrites(writes, o = {}) {
      crash = { remaining: writes, applyLast: o.applyLast ?? false, fired: false };
    },
    crashed() {
      return crash?.fired ?? false;
    },
    heal() {
      down = false;
      writesDenied = false;
      failQueue.length = 0;
      crash = undefined;
    },
    inspect(path, o = {}) {
      const k = mountsOf(o.namespace ?? '')
        .get(o.mount ?? 'secret')
        ?.keys.get(path.replace(/^\/+|\/+$/g, ''));
      if (!k) return undefined;
      return {
        currentVersion: k.currentVersion,
        customMetadata: k.customMetadata ? { ...k.customMetadata } : null,
        versions: [...k.versions].map(([version, v]) => ({
          version,
          ...(v.data ? { data: structuredClone(v.data) } : {}),
          deleted: isDeleted(v),
          destroyed: v.destroyed,
        })),
      };
    },
    requests,
    stats,
  };
}

/** -1 when `pattern` does not match `path`; otherwise higher for more specific patterns (exact beats any glob). */
function matchScore(pattern: string, path: string): number {
  const glob = pattern.endsWith('*');
  const body = glob ? pattern.slice(0, -1) : pattern;
  const re = new RegExp(`^${body.split('+').map(escapeRegExp).join('[^/]+')}${glob ? '.*' : ''}$`);
  if (!re.test(path)) return -1;
  return (glob ? 0 : 100_000) + body.replace(/\+/g, '').length;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
