import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import nodeVault from 'node-vault';
import { Secret } from '../../src/domain/secret.ts';
import type { SecretStore } from '../secret-store.ts';
import { StoreError } from '../store-error.ts';
import { VaultAuth } from './auth.ts';
import type { VaultRequest } from './auth.ts';
import { VaultStore } from './store.ts';

export { VaultStore } from './store.ts';
export { VaultAuth } from './auth.ts';

export interface VaultStoreOptions {
  /** VAULT_ADDR, e.g. https://vault.example.com:8200 */
  addr: string;
  token?: string | Secret;
  /** Used when `token` is absent. `mount` is the AppRole auth mount (default 'approle'). */
  approle?: { roleId: string; secretId: string | Secret; mount?: string };
  /** KV v2 mount (default 'secret'). */
  mount?: string;
  /** Vault Enterprise namespace, sent as X-Vault-Namespace. */
  namespace?: string;
  /** Per-request timeout (default 10 000). */
  requestTimeoutMs?: number;
  /**
   * TLS: the certificate is always verified (whatever node-vault's VAULT_SKIP_VERIFY says) unless
   * `skipVerify` is true; `caFile` is a PEM file of the CA(s) to trust instead of the system's.
   */
  tls?: { skipVerify?: boolean; caFile?: string };
}

export function createVaultStore(opts: VaultStoreOptions): SecretStore {
  const addr = opts.addr.replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]/.test(addr)) throw new StoreError('store_config', `VAULT_ADDR "${opts.addr}" is not an http(s) URL`);
  const mount = (opts.mount ?? 'secret').replace(/^\/+|\/+$/g, '');
  if (!mount) throw new StoreError('store_config', 'VAULT_KV_MOUNT is empty');
  const ctx = { addr, ...(opts.namespace ? { namespace: opts.namespace } : {}) };
  const request = nodeVaultRequest(addr, opts.namespace, opts.requestTimeoutMs ?? 10_000, tlsOptions(opts.tls));
  const token = opts.token === undefined || opts.token === '' ? undefined : asSecret(opts.token);
  const auth = new VaultAuth(
    request,
    {
      ...(token ? { token } : {}),
      ...(!token && opts.approle ? { approle: { roleId: opts.approle.roleId, secretId: asSecret(opts.approle.secretId), mount: opts.approle.mount ?? 'approle' } } : {}),
    },
    ctx,
  );
  return new VaultStore({ request, auth, mount, ctx });
}

function asSecret(v: string | Secret): Secret {
  return v instanceof Secret ? v : new Secret(v);
}

function tlsOptions(tls: VaultStoreOptions['tls']): { strictSSL: boolean; ca?: Buffer } {
  if (!tls?.caFile) return { strictSSL: tls?.skipVerify !== true };
  let ca: Buffer;
  try {
    ca = readFileSync(tls.caFile);
  } catch (err) {
    throw new StoreError('store_config', `VAULT_CACERT ${tls.caFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): point it at the PEM file of the CA that signed Vault's certificate`);
  }
  return { strictSSL: tls.skipVerify !== true, ca };
}

/** node-vault's debug output prints request bodies (an AppRole secret_id among them): never on, whatever DEBUG says. */
const silent = (): void => undefined;

/**
 * node-vault's transport (axios → follow-redirects) logs every request's options, the
 * X-Vault-Token header included, under DEBUG=follow-redirects (or DEBUG=*). Those namespaces are
 * switched off in the `debug` package node-vault loads; whatever else DEBUG enables stays on.
 */
function silenceTransportDebug(): void {
  let debug: { disable(): string; enable(namespaces: string): void };
  try {
    const fromNodeVault = createRequire(createRequire(import.meta.url).resolve('node-vault'));
    debug = fromNodeVault('debug') as typeof debug;
  } catch {
    return;
  }
  const current = debug.disable();
  debug.enable([current, '-node-vault', '-node-vault:*', '-follow-redirects'].filter(Boolean).join(','));
}
silenceTransportDebug();

/** node-vault as a plain request function: the token and namespace are passed per call, never taken from the environment. */
function nodeVaultRequest(addr: string, namespace: string | undefined, timeoutMs: number, tls: { strictSSL: boolean; ca?: Buffer }): VaultRequest {
  // node-vault sets strictSSL from `!process.env.VAULT_SKIP_VERIFY`, so VAULT_SKIP_VERIFY=false turned
  // verification off; options given here decide instead (its https agent is built from requestOptions).
  const client = nodeVault({ endpoint: addr, apiVersion: 'v1', token: '', debug: silent, requestOptions: tls, rpDefaults: { strictSSL: tls.strictSSL } } as nodeVault.VaultOptions);
  // node-vault falls back to VAULT_TOKEN, VAULT_NAMESPACE and VAULT_PREFIX from the environment; options come from config.ts only.
  const loose = client as unknown as { token: string; namespace?: string; pathPrefix: string };
  loose.token = '';
  loose.namespace = undefined;
  loose.pathPrefix = '';
  return async ({ method, path, query, json, token }) => {
    const headers: Record<string, string> = {};
    if (token) headers['X-Vault-Token'] = token.reveal();
    if (namespace) headers['X-Vault-Namespace'] = namespace;
    return client.request({ path: `/${path}${query ?? ''}`, method, headers, timeout: timeoutMs, ...(json !== undefined ? { json } : {}) });
  };
}
