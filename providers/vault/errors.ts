import { StoreError } from '../store-error.ts';

/** One Vault API call, described well enough to tell an operator which policy line is missing. */
export interface VaultCall {
  method: 'GET' | 'POST' | 'DELETE';
  /** API path below /v1/, e.g. `secret/data/twilio/AC…`. */
  path: string;
  /** The policy capabilities this call needs on `path`. */
  capabilities: readonly string[];
  /** What the store was doing, for the message: "read the current credential". */
  purpose: string;
}

export interface VaultErrorContext {
  addr: string;
  namespace?: string;
}

interface VaultErrorShape {
  message?: unknown;
  code?: unknown;
  response?: { statusCode?: unknown; body?: unknown };
}

const CAS_MISMATCH = 'check-and-set parameter did not match the current version';
/** Node's codes for a certificate it would not accept (self-signed, unknown CA, expired, wrong name). */
const TLS_CERT_CODE = /CERT|SELF_SIGNED|UNABLE_TO_(VERIFY|GET_ISSUER)|ALTNAME/;

/** HTTP status of a node-vault ApiResponseError; undefined for transport failures. */
export function vaultStatus(err: unknown): number | undefined {
  const s = (err as VaultErrorShape | null)?.response?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

export function vaultBody(err: unknown): unknown {
  return (err as VaultErrorShape | null)?.response?.body;
}

/** Vault's own explanation (its `errors` array), which never echoes request data. */
export function vaultErrors(err: unknown): string {
  const body = vaultBody(err) as { errors?: unknown } | undefined;
  const list = Array.isArray(body?.errors) ? body.errors.filter((e): e is string => typeof e === 'string') : [];
  const text = list.join('; ').replace(/\s+/g, ' ').trim();
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

export function isCasMismatch(err: unknown): boolean {
  return vaultStatus(err) === 400 && vaultErrors(err).includes(CAS_MISMATCH);
}

/**
 * Maps a node-vault error to a StoreError. node-vault's transport errors are axios errors whose
 * `config` holds the request headers (the Vault token) and body (the secret), so neither the error
 * nor its message is kept: the cause is rebuilt from the status and error code only.
 */
export function toStoreError(err: unknown, call: VaultCall, ctx: VaultErrorContext): StoreError {
  if (err instanceof StoreError) return err;
  const status = vaultStatus(err);
  const rawCode = (err as VaultErrorShape | null)?.code;
  const code = typeof rawCode === 'string' ? rawCode : undefined;
  const said = vaultErrors(err);
  const vaultSaid = said ? ` (Vault: ${said})` : '';
  const where = `${call.method} /v1/${call.path}${ctx.namespace ? ` in namespace ${ctx.namespace}` : ''}`;
  const cause = new Error(status !== undefined ? `Vault HTTP ${status}` : `transport error ${code ?? 'unknown'}`);
  const make = (c: ConstructorParameters<typeof StoreError>[0], message: string): StoreError => new StoreError(c, message, cause);

  if (status === undefined && code !== undefined && TLS_CERT_CODE.test(code)) {
    return make('store_unavailable', `Vault's TLS certificate at ${ctx.addr} was not accepted (${code}), so nothing was sent: if Vault uses a private CA, set VAULT_CACERT to its PEM file; retrying`);
  }
  if (status === undefined) {
    const timedOut = code === 'ECONNABORTED' || code === 'ETIMEDOUT';
    return make(
      'store_unavailable',
      `cannot reach Vault at ${ctx.addr} to ${call.purpose} (${timedOut ? 'timed out' : (code ?? 'network error')}): check VAULT_ADDR and that Vault is up; retrying`,
    );
  }
  if (status === 401 || status === 403) {
    const caps = call.capabilities.map((c) => `"${c}"`).join(', ');
    return make(
      'store_permission',
      `Vault denied ${where} to ${call.purpose}: the token's policy needs capabilities [${caps}] on path "${call.path}", or the token has expired or been revoked${vaultSaid}`,
    );
  }
  if (status === 400 && said.includes(CAS_MISMATCH)) {
    return make('store_conflict', `another writer changed ${call.path} first (check-and-set did not match): re-read and retry`);
  }
  if (status === 400 && said.includes('check-and-set parameter required')) {
    return make('store_config', `Vault requires check-and-set on ${call.path} but the write had none${vaultSaid}`);
  }
  if (status === 404) {
    return make('store_config', `Vault has no KV v2 route for ${where}: check VAULT_KV_MOUNT (enable one with: vault secrets enable -path=<mount> kv-v2)${vaultSaid}`);
  }
  if (status === 429 || status === 412 || status >= 500) {
    const why = status === 503 ? 'Vault is sealed, in standby or overloaded' : status === 429 ? 'Vault is rate limiting' : `Vault answered HTTP ${status}`;
    return make('store_unavailable', `${why} during ${where} to ${call.purpose}; retrying${vaultSaid}`);
  }
  return make('store_config', `Vault rejected ${where} to ${call.purpose} (HTTP ${status})${vaultSaid}`);
}
