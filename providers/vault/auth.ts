import { Secret } from '../../src/domain/secret.ts';
import { StoreError } from '../store-error.ts';
import { toStoreError } from './errors.ts';
import type { VaultErrorContext } from './errors.ts';

/** One raw Vault HTTP call; throws node-vault's errors unchanged. */
export type VaultRequest = (req: { method: 'GET' | 'POST' | 'DELETE'; path: string; query?: string; json?: unknown; token?: Secret }) => Promise<unknown>;

export interface VaultAuthOptions {
  token?: Secret;
  approle?: { roleId: string; secretId: Secret; mount: string };
}

interface AuthBlock {
  client_token?: unknown;
  lease_duration?: unknown;
  renewable?: unknown;
}

/** Below this many seconds of lease an AppRole token is replaced by a fresh login rather than renewed. */
const MIN_RENEWABLE_LEASE_S = 3;

/**
 * Supplies the Vault token. A static token is used as given and, when lookup-self says it is
 * renewable with a TTL, renewed at two thirds of its TTL. An AppRole login is done lazily (first
 * use), renewed the same way, and replaced by a new login when renewal fails, when its lease nears
 * its end (max TTL reached) or when Vault refuses it (invalidate()).
 */
export class VaultAuth {
  readonly #request: VaultRequest;
  readonly #opts: VaultAuthOptions;
  readonly #ctx: VaultErrorContext;
  readonly #now: () => number;
  #token: Secret | undefined;
  #leaseS = 0;
  #renewable = false;
  #expiresAt = Number.POSITIVE_INFINITY;
  #login: Promise<Secret> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lookedUp = false;
  #closed = false;

  constructor(request: VaultRequest, opts: VaultAuthOptions, ctx: VaultErrorContext, now: () => number = Date.now) {
    if (!opts.token && !opts.approle) throw new StoreError('store_config', 'no Vault credential: set VAULT_TOKEN, or an AppRole role id and secret id');
    this.#request = request;
    this.#opts = opts;
    this.#ctx = ctx;
    this.#now = now;
    this.#token = opts.approle ? undefined : opts.token;
  }

  get canLogin(): boolean {
    return this.#opts.approle !== undefined;
  }

  async token(): Promise<Secret> {
    if (!this.#opts.approle) {
      if (!this.#lookedUp) {
        this.#lookedUp = true;
        // Renewal of a static token is a courtesy: a token that cannot be looked up still works.
        void this.#scheduleStaticRenewal().catch(() => undefined);
      }
      return this.#opts.token as Secret;
    }
    if (this.#token && this.#now() < this.#expiresAt - this.#marginMs()) return this.#token;
    return this.#loginOnce();
  }

  /** Vault refused `token`: an AppRole token is dropped so the next call logs in again. */
  invalidate(token: Secret): void {
    if (!this.#opts.approle || this.#token !== token) return;
    this.#token = undefined;
    this.#clearTimer();
  }

  close(): void {
    this.#closed = true;
    this.#clearTimer();
  }

  #marginMs(): number {
    return Math.max(200, Math.min(30_000, this.#leaseS * 100));
  }

  #loginOnce(): Promise<Secret> {
    this.#login ??= this.#doLogin().finally(() => {
      this.#login = undefined;
    });
    return this.#login;
  }

  async #doLogin(): Promise<Secret> {
    const approle = this.#opts.approle as NonNullable<VaultAuthOptions['approle']>;
    const path = `auth/${approle.mount}/login`;
    let body: unknown;
    try {
      body = await this.#request({ method: 'POST', path, json: { role_id: approle.roleId, secret_id: approle.secretId.reveal() } });
    } catch (err) {
      const mapped = toStoreError(err, { method: 'POST', path, capabilities: ['update'], purpose: 'log in with AppRole' }, this.#ctx);
      if (mapped.code === 'store_config' || mapped.code === 'store_permission') {
        // Vault answers a wrong role or secret id with 400 (older versions 403).
        throw new StoreError(
          'store_permission',
          `Vault AppRole login at ${path} failed: check the role id and secret id (secret ids expire and can be limited in uses) and that AppRole is enabled at "${approle.mount}" (${mapped.message})`,
          mapped.cause,
        );
      }
      throw mapped;
    }
    const auth = (body as { auth?: AuthBlock } | undefined)?.auth;
    if (typeof auth?.client_token !== 'string' || auth.client_token.length === 0) {
      throw new StoreError('store_permission', `Vault AppRole login at ${path} returned no client token`);
    }
    const token = new Secret(auth.client_token);
    this.#adopt(token, numberOr(auth.lease_duration, 0), auth.renewable === true);
    return token;
  }

  async #scheduleStaticRenewal(): Promise<void> {
    const token = this.#opts.token as Secret;
    const body = (await this.#request({ method: 'GET', path: 'auth/token/lookup-self', token })) as { data?: { ttl?: unknown; renewable?: unknown } } | undefined;
    const ttl = numberOr(body?.data?.ttl, 0);
    if (ttl > 0 && body?.data?.renewable === true) this.#adopt(token, ttl, true);
  }

  #adopt(token: Secret, leaseS: number, renewable: boolean): void {
    this.#token = token;
    this.#leaseS = leaseS;
    this.#renewable = renewable;
    this.#expiresAt = leaseS > 0 ? this.#now() + leaseS * 1000 : Number.POSITIVE_INFINITY;
    this.#clearTimer();
    if (this.#closed || leaseS <= 0) return;
    this.#timer = setTimeout(() => void this.#renew(token), Math.max(100, (leaseS * 1000 * 2) / 3));
    this.#timer.unref();
  }

  async #renew(token: Secret): Promise<void> {
    if (this.#closed || this.#token !== token) return;
    const approle = this.#opts.approle !== undefined;
    if (approle && (!this.#renewable || this.#leaseS < MIN_RENEWABLE_LEASE_S)) {
      await this.#freshLogin(token);
      return;
    }
    try {
      const body = (await this.#request({ method: 'POST', path: 'auth/token/renew-self', json: {}, token })) as { auth?: AuthBlock } | undefined;
      const lease = numberOr(body?.auth?.lease_duration, 0);
      if (this.#token === token) this.#adopt(token, lease, body?.auth?.renewable === true);
    } catch {
      // A static token is kept: it may still be valid until its TTL ends, and nothing else can replace it.
      if (approle) await this.#freshLogin(token);
    }
  }

  async #freshLogin(old: Secret): Promise<void> {
    if (this.#token !== old) return;
    this.#token = undefined;
    // A failed background login is retried by the next token() call, which reports its error.
    await this.#loginOnce().catch(() => undefined);
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

function numberOr(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}
