import type { Config, StoreConfig } from './config.ts';
import { connectRedis, isCertificateRefused, isRedisUnavailable, probeTls } from './state/redis.ts';
import { describeRedisTarget, type RedisTarget } from './state/redis-target.ts';
import { PermanentError } from './domain/errors.ts';

/**
 * What start-up checks before it serves anything, and the one line it prints when a check fails.
 * A process that cannot reach Redis, its store or Twilio should not listen and log stack traces:
 * it should stop at once and say what to fix.
 */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

/** A Redis URL as logs may show it: no user, no password. */
export function redisLocation(url: string): string {
  if (url.startsWith('/')) return `unix:${url.split('?')[0]}`;
  try {
    const u = new URL(/^[a-z]+:\/\//i.test(url) ? url : `redis://${url}`);
    return `${u.protocol}//${u.host}${u.pathname.length > 1 ? u.pathname : ''}`;
  } catch {
    return '(unparseable REDIS_URL)';
  }
}

const AUTH_REFUSED = /NOAUTH|WRONGPASS|invalid password|invalid username-password|AUTH.*called without any password/i;

/**
 * Wait until Redis answers PING, up to `timeoutMs` (Redis may be starting next to us, as in
 * docker compose); then give up with one line. A refused password is not worth waiting for.
 */
export async function waitForRedis(target: string | RedisTarget, timeoutMs: number): Promise<void> {
  const t: RedisTarget = typeof target === 'string' ? { kind: 'url', url: target } : target;
  const where = describeRedisTarget(t, redisLocation);
  const setting = { url: 'REDIS_URL', sentinel: 'REDIS_SENTINELS and REDIS_SENTINEL_NAME', cluster: 'REDIS_CLUSTER_NODES' }[t.kind];
  const deadline = Date.now() + timeoutMs;
  let last: Error | undefined;
  let clusterNode = false;
  for (;;) {
    const remaining = deadline - Date.now();
    const probe = connectRedis(t, 'shared', {
      overrides: {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
        sentinelRetryStrategy: () => null,
        enableOfflineQueue: false,
        connectTimeout: Math.max(500, Math.min(5_000, remaining)),
      },
    });
    probe.on('error', (err: Error) => (last = err));
    try {
      await probe.connect();
      await probe.ping();
      // One node of a Cluster answers PING like a server of its own, then MOVED for most keys.
      if (t.kind === 'url' && /^cluster_enabled:1/m.test(await probe.info('cluster'))) {
        clusterNode = true;
        break;
      }
      return;
    } catch (err) {
      last = (err as Error).message === 'Connection is closed.' && last ? last : (err as Error);
    } finally {
      probe.disconnect();
    }
    const reason = describeRedisError(last);
    if (AUTH_REFUSED.test(last?.message ?? '')) {
      // Through Sentinel, ioredis says which side refused: the Sentinels ("All sentinels are
      // unreachable … Last error: WRONGPASS"), or else the primary they named.
      if (t.kind === 'sentinel' && /^All sentinels are unreachable/.test(last?.message ?? '')) {
        throw new StartupError(`the Sentinels at ${where} refused the credentials (${reason}): set REDIS_SENTINEL_PASSWORD to the Sentinels' requirepass (unset it if they have none)`);
      }
      const how =
        t.kind === 'url'
          ? 'put the right user and password in REDIS_URL (redis://user:password@host:port), or REDIS_USERNAME and REDIS_PASSWORD'
          : `set REDIS_USERNAME and REDIS_PASSWORD to an ACL user of the ${t.kind === 'sentinel' ? 'primary and replicas (the Sentinels answered)' : 'cluster nodes'}`;
      throw new StartupError(`Redis at ${where} refused the credentials (${reason}): ${how}`);
    }
    // A certificate not signed by REDIS_TLS_CA_FILE, or TLS spoken to a plain-text Redis (and the
    // reverse), will not get better by waiting. Through the Sentinels ioredis reports either only as
    // "Connection is closed": ask the servers directly.
    if (!/ECONNREFUSED|ENOTFOUND|EAI_AGAIN/.test(reason)) {
      const tls = await probeTls(t, Math.max(500, Math.min(2_000, deadline - Date.now())));
      // The listed servers passed, but a server they led to did not (a Sentinel's primary, a cluster node).
      if (!tls.refused && isCertificateRefused(last)) tls.refused = { server: t.kind === 'sentinel' ? 'the primary the Sentinels named' : 'a node of the cluster', code: last.code, reason: last.message };
      if (tls.refused) {
        const ca = t.tls?.caFile ? `REDIS_TLS_CA_FILE (${t.tls.caFile}) did not sign it: give the PEM file of the CA that did` : 'set REDIS_TLS_CA_FILE to the PEM file of the CA that signed it';
        throw new StartupError(`Redis at ${where}: ${tls.refused.server} presented a TLS certificate Rotator does not trust (${tls.refused.code}: ${oneLine(tls.refused.reason)}): ${ca}`);
      }
      if (tls.speaksTls) {
        throw new StartupError(`Redis at ${where} speaks TLS (${tls.speaksTls} completed a TLS handshake) but Rotator connects without it: ${t.kind === 'url' ? 'write rediss:// in REDIS_URL' : 'set REDIS_TLS=true'} (and REDIS_TLS_CA_FILE for a private CA)`);
      }
    }
    if (t.kind === 'cluster' && /cluster support disabled/i.test(last?.message ?? '')) {
      throw new StartupError(`Redis at ${where} is not a cluster (cluster support disabled): use REDIS_URL for a single server`);
    }
    if (Date.now() >= deadline) {
      throw new StartupError(
        `Redis at ${where} did not answer within ${Math.round(timeoutMs / 1000)} s (${reason}): start it or correct ${setting}${t.kind === 'url' ? ', or unset REDIS_URL to run an embedded redis-server' : ''} (REDIS_CONNECT_TIMEOUT_SECONDS sets the wait)`,
      );
    }
    await new Promise((r) => setTimeout(r, Math.min(500, Math.max(0, deadline - Date.now()))));
  }
  if (clusterNode) throw new StartupError(`Redis at ${where} is a node of a Redis Cluster: list the cluster's nodes in REDIS_CLUSTER_NODES instead of REDIS_URL (and use a hash-tagged REDIS_PREFIX such as {rotator})`);
}

function describeRedisError(err: Error | undefined): string {
  if (!err) return 'no answer';
  const code = (err as { code?: string }).code;
  return oneLine(code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message).slice(0, 200);
}

/** The store as the summary and error lines name it; never a credential. */
export function describeStore(store: StoreConfig): string {
  switch (store.kind) {
    case 'file':
      return `file ${store.dir}`;
    case 'aws':
      return `aws${store.region ? ` ${store.region}` : ''}${store.endpoint ? ` via ${store.endpoint}` : ''}`;
    case 'vault':
      return `vault ${store.addr} (mount ${store.mount})`;
  }
}

/** store.check() (or opening the store) failed: one line with the store's own advice, or ours. */
export function storeStartupError(store: StoreConfig, err: unknown): StartupError {
  // "; retrying" is true inside a rotation, not here: start-up stops.
  const message = oneLine((err as Error)?.message ?? String(err)).replace(/[;,]\s*retrying\.?$/i, '');
  const fix: Record<StoreConfig['kind'], string> = {
    file: 'check FILE_STORE_PATH and FILE_STORE_KEY',
    aws: 'check AWS_REGION, the AWS credentials and AWS_ENDPOINT_URL_SECRETS_MANAGER',
    vault: 'check VAULT_ADDR, VAULT_TOKEN (or VAULT_ROLE_ID/VAULT_SECRET_ID) and VAULT_KV_MOUNT',
  };
  // Store errors already say what to do where they know it ("…; set FILE_STORE_PATH to …").
  const advice = /\b(set|check|use|unseal|grant|give|allow|create)\b/i.test(message) ? '' : `: ${fix[store.kind]}`;
  return new StartupError(`secret store (${describeStore(store)}) failed its start-up check: ${message}${advice}`);
}

/**
 * The Twilio admin credential was refused at start-up. Only permanent refusals stop start-up;
 * Twilio being slow or down is logged and reported by /readyz instead (restarting would not help).
 */
export function twilioStartupError(cfg: Pick<Config, 'twilio'>, err: unknown): StartupError | undefined {
  if (!(err instanceof PermanentError) || !cfg.twilio) return undefined;
  const parent = cfg.twilio.accountSid;
  const tag = /\((HTTP \d+[^)]*)\)/.exec(err.message)?.[1] ?? err.code;
  const usesKey = cfg.twilio.username.startsWith('SK');
  const credential = usesKey
    ? 'set TWILIO_API_KEY and TWILIO_API_SECRET to a Main key of that account (Standard keys cannot manage keys), or use TWILIO_AUTH_TOKEN'
    : "set TWILIO_AUTH_TOKEN to the parent account's current Auth Token (Console → Account → API keys & tokens)";
  switch (err.code) {
    case 'twilio_admin_unauthorized':
      return new StartupError(`Twilio refused the admin credential for parent account ${parent} (${tag}): ${credential}`);
    case 'twilio_forbidden':
      return new StartupError(`Twilio forbids the admin credential to read parent account ${parent} (${tag}): ${credential}`);
    case 'twilio_not_found':
      return new StartupError(`Twilio has no account ${parent} for this credential (${tag}): check TWILIO_ACCOUNT_SID (the parent account's SID, AC…)`);
    case 'twilio_parent_inactive':
      return new StartupError(`${oneLine(err.message)}: reactivate it in the Twilio Console, or set TWILIO_ACCOUNT_SID to an active parent account`);
    default:
      return new StartupError(`Twilio refused the start-up check of parent account ${parent}: ${oneLine(err.message)}`);
  }
}

/** Reject after `ms` with a message naming what did not answer. */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} did not answer within ${Math.round(ms / 1000)} s`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e: unknown) => (clearTimeout(t), reject(e as Error)),
    );
  });
}

/**
 * A readiness check that asks a remote service at most once per `okMs` (after a success) or
 * `failMs` (after a failure): /readyz may be probed every few seconds, Twilio should not be.
 */
export function cachedCheck(check: () => Promise<void>, opts: { okMs: number; failMs: number; now?: () => number }): () => Promise<void> {
  const now = opts.now ?? Date.now;
  let last: { at: number; error?: Error } | undefined;
  let inFlight: Promise<void> | undefined;
  return async () => {
    if (last && now() - last.at < (last.error ? opts.failMs : opts.okMs)) {
      if (last.error) throw last.error;
      return;
    }
    inFlight ??= check().then(
      () => {
        last = { at: now() };
      },
      (err: unknown) => {
        last = { at: now(), error: err as Error };
      },
    ).finally(() => (inFlight = undefined));
    await inFlight;
    if (last?.error) throw last.error;
  };
}

export interface StartupSummary {
  mode: 'all' | 'api' | 'worker';
  store: string;
  parent?: string;
  drainSeconds: number;
  redis: string;
  redisEmbedded: boolean;
  apiTokens: number;
  oidc: boolean;
  api?: string;
  workerConcurrency?: number;
}

/** The start-up summary: one sentence for a person, the same facts as fields for machines. */
export function summaryLine(s: StartupSummary): string {
  const parts = [
    `mode ${s.mode}`,
    `store ${s.store}`,
    `parent ${s.parent ?? '(none: API only)'}`,
    `drain ${s.drainSeconds} s`,
    `redis ${s.redis}${s.redisEmbedded ? ' (embedded)' : ''}`,
    `${s.apiTokens} API token${s.apiTokens === 1 ? '' : 's'}${s.oidc ? ' + OIDC' : ''}`,
  ];
  if (s.api) parts.push(`API ${s.api}`);
  if (s.workerConcurrency !== undefined) parts.push(`worker concurrency ${s.workerConcurrency}`);
  return `rotator started: ${parts.join(', ')}`;
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/**
 * The one line a start-up that failed in an unforeseen way prints. Redis that answered the
 * start-up's first check and then went away (restarting, failing over) is named as such, rather
 * than in ioredis's words, so that whoever supervises the process knows a restart is the fix. A
 * bare socket error code may be the store's or Twilio's: those keep their own message.
 */
export function startupFailureLine(err: unknown): string {
  const message = ((err as Error)?.message ?? String(err)).replace(/\s+/g, ' ').trim();
  const lostRedis = isRedisUnavailable(err) && !(err as { code?: unknown }).code;
  return `rotator failed to start: ${lostRedis ? `Redis stopped answering during start-up (${message}): start rotator again once Redis answers` : message}`;
}
