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
}

export function createVaultStore(opts: VaultStoreOptions): SecretStore {
  const addr = opts.addr.replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]/.test(addr)) throw new StoreError('store_config', `VAULT_ADDR "${opts.addr}" is not an http(s) URL`);
  const mount = (opts.mount ?? 'secret').replace(/^\/+|\/+$/g, '');
  if (!mount) throw new StoreError('store_config', 'VAULT_KV_MOUNT is empty');
  const ctx = { addr, ...(opts.namespace ? { namespace: opts.namespace } : {}) };
  const request = nodeVaultRequest(addr, opts.namespace, opts.requestTimeoutMs ?? 10_000);
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

/** node-vault as a plain request function: the token and namespace are passed per call, never taken from the environment. */
function nodeVaultRequest(addr: string, namespace: string | undefined, timeoutMs: number): VaultRequest {
  const client = nodeVault({ endpoint: addr, apiVersion: 'v1', token: '' });
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
