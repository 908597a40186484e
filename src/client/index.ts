/**
 * Rotator's client library (`import { createTwilioClient } from 'rotator/client'`): a ready
 * `twilio` client for a managed credential that never fails a request because of a rotation.
 *
 * - It reads the credential from the store Rotator writes (file, AWS Secrets Manager or Vault),
 *   configured by the same names (SECRET_STORE, FILE_STORE_PATH, FILE_STORE_KEY[_FILE],
 *   AWS_REGION, AWS_ENDPOINT_URL_SECRETS_MANAGER, VAULT_ADDR, VAULT_TOKEN or VAULT_ROLE_ID +
 *   VAULT_SECRET_ID, VAULT_KV_MOUNT, SECRET_PATH_TEMPLATE), and keeps it for `refreshSeconds`.
 *   Only the chosen store's SDK is loaded.
 * - On a 401 from Twilio it reads the store again and, when that holds another key, sends the same
 *   request once more with it: a key deleted while the application still held it costs no failed
 *   request. The hook is twilio's own `httpClient` option, so every API of the client is covered.
 * - With `heartbeat`, it reports in the background which key SID it uses, so Rotator's consumer
 *   gate promotes as soon as every application has moved (see HeartbeatReporter).
 */
import twilio from 'twilio';
import type { TwilioApiKeyCredential } from '../domain/secret.ts';
import { DEFAULT_CREDENTIAL } from '../domain/credential.ts';
import { CredentialCache, type CredentialReader } from './credential.ts';
import { HeartbeatReporter, type HeartbeatOptions } from './heartbeat.ts';

export type { HeartbeatOptions } from './heartbeat.ts';
export type { CredentialReader } from './credential.ts';
// Webhook signatures during an Auth Token rotation (also `rotator/client/webhook` on its own).
export { validateTwilioRequest, webhookTokens, type WebhookTokens, type TwilioWebhookRequest, type WebhookVerdict } from './webhook.ts';

/** What twilio's `httpClient` option is called with and answers (its RequestClient's shape). */
export interface TwilioRequestOptions {
  method: string;
  uri: string;
  username?: string;
  password?: string;
  headers?: Record<string, string>;
  [option: string]: unknown;
}
export interface TwilioResponse {
  statusCode: number;
  body: unknown;
  headers?: unknown;
}
export interface TwilioHttpClient {
  request(opts: TwilioRequestOptions): Promise<TwilioResponse>;
}

export interface TwilioClientOptions {
  /** The subaccount whose credential this is (AC…). */
  accountSid: string;
  /** The managed credential's name (default `default`). */
  credential?: string;
  /** How long a credential read from the store is used before it is read again (default 300 s). */
  refreshSeconds?: number;
  /** Where the store settings are read from, by Rotator's names (default: process.env). */
  env?: Record<string, string | undefined>;
  /** Read credentials from this instead of opening a store from `env` (any Rotator SecretStore fits). */
  store?: CredentialReader & { close?(): Promise<void> };
  /** Send Twilio requests to this origin instead (TWILIO_BASE_URL, e.g. a local emulator); default from `env`. */
  twilioBaseUrl?: string;
  /** The HTTP client the requests finally go through (default: a keep-alive twilio.RequestClient). */
  httpClient?: TwilioHttpClient;
  /** Report the key in use to Rotator (POST /v1/consumers/heartbeat). */
  heartbeat?: HeartbeatOptions;
}

/** Not one of the client's own failures: the store has no credential for it yet (never rotated, or bootstrapping). */
export class NoCredentialError extends Error {
  readonly code = 'no_credential';
  constructor(path: string) {
    super(`the store holds no credential at ${path} yet (Rotator has not bootstrapped it)`);
    this.name = 'NoCredentialError';
  }
}

export interface RotatorHandle {
  /** The key SID in use now. */
  keySid(): string | undefined;
  /** Read the store now (e.g. after being told of an urgent rotation). */
  refresh(): Promise<string | undefined>;
  /** How many requests were sent again after a 401 with a newer key (diagnostics). */
  readonly retriedAfter401: number;
  /** Stop reporting and close the store connection. Requests still work with the last credential. */
  close(): Promise<void>;
}

export type RotatorTwilioClient = ReturnType<typeof twilio> & { rotator: RotatorHandle };

export async function createTwilioClient(opts: TwilioClientOptions): Promise<RotatorTwilioClient> {
  if (!/^AC[0-9a-f]{32}$/.test(opts.accountSid)) throw new TypeError(`accountSid must be AC followed by 32 lowercase hex digits (got ${JSON.stringify(opts.accountSid)})`);
  const credentialName = opts.credential ?? DEFAULT_CREDENTIAL;
  const { store, path, twilioBaseUrl, close: closeStore } = await openReader(opts, credentialName);
  const cache = new CredentialCache(store, path, Math.max(0, opts.refreshSeconds ?? 300) * 1000);
  const baseUrl = (opts.twilioBaseUrl ?? twilioBaseUrl)?.replace(/\/+$/, '');
  const inner: TwilioHttpClient = opts.httpClient ?? (new twilio.RequestClient({ keepAlive: true }) as unknown as TwilioHttpClient);
  let retried = 0;

  const send = (o: TwilioRequestOptions, c: TwilioApiKeyCredential): Promise<TwilioResponse> =>
    inner.request({
      ...o,
      // A copy: RequestClient writes the Authorization header into the object it is given.
      headers: { ...o.headers },
      uri: baseUrl ? o.uri.replace(/^https:\/\/[a-z0-9.-]+\.twilio\.com/, baseUrl) : o.uri,
      username: c.apiKeySid,
      password: c.apiKeySecret.reveal(),
    });

  const httpClient: TwilioHttpClient = {
    async request(o) {
      const cred = await cache.current();
      if (!cred) throw new NoCredentialError(path);
      const res = await send(o, cred);
      if (res.statusCode !== 401) return res;
      // Twilio refused the key: Rotator may have deleted it (the application held it longer than
      // the drain). A 401 is answered before anything is done, so sending again is safe.
      const fresh = await cache.afterRefusal(cred.apiKeySid);
      if (!fresh) return res;
      retried++;
      return send(o, fresh);
    },
  };

  // twilio needs a username and password to build a client; every request carries the cached
  // credential instead (httpClient above), so these are never sent.
  const first = await cache.current();
  const client = twilio(first?.apiKeySid ?? 'SK-not-yet-known', first ? first.apiKeySecret.reveal() : 'not-yet-known', { accountSid: opts.accountSid, httpClient: httpClient as never });

  let reporter: HeartbeatReporter | undefined;
  if (opts.heartbeat) {
    reporter = new HeartbeatReporter(opts.heartbeat, {
      accountSid: opts.accountSid,
      credential: credentialName,
      keySid: async () => (await cache.current().catch(() => undefined))?.apiKeySid ?? cache.keySid,
    });
    cache.onChange(() => reporter?.nudge());
    reporter.start();
  }

  const handle: RotatorHandle = {
    keySid: () => cache.keySid,
    refresh: async () => (await cache.reload())?.apiKeySid,
    get retriedAfter401() {
      return retried;
    },
    async close() {
      await reporter?.close();
      await closeStore?.();
    },
  };
  return Object.assign(client, { rotator: handle });
}

/** The store named by `env` (Rotator's own settings, src/config.ts), opened read-only in spirit: it never creates a file-store key. */
async function openReader(opts: TwilioClientOptions, credential: string): Promise<{ store: CredentialReader; path: string; twilioBaseUrl?: string; close?: () => Promise<void> }> {
  const [{ loadStoreConfig }, { secretPath }] = await Promise.all([import('../config.ts'), import('../../providers/secret-store.ts')]);
  const cfg = loadStoreConfig(opts.env);
  const path = secretPath(cfg.secretPathTemplate, opts.accountSid, credential);
  const twilioBaseUrl = cfg.twilioBaseUrl;
  if (opts.store) return { store: opts.store, path, ...(twilioBaseUrl ? { twilioBaseUrl } : {}) };
  const { openSecretStore } = await import('../stores.ts');
  // A missing key file is an error here, never a reason to generate one (the secrets were written with another).
  const storeCfg = cfg.store.kind === 'file' && !cfg.store.keyBase64 ? { ...cfg.store, keyFileGiven: true } : cfg.store;
  const store = await openSecretStore(storeCfg);
  return { store, path, ...(twilioBaseUrl ? { twilioBaseUrl } : {}), close: () => store.close() };
}
