import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { config as loadDotenv } from 'dotenv';
import { Secret } from './domain/secret.ts';
import { readRedisTarget } from './config-redis.ts';
import type { RedisTarget } from './state/redis-target.ts';
import { NOTIFY_EVENTS, type NotifyEventType } from './domain/notification.ts';

/**
 * Environment → typed configuration, in one place (the only module that reads process.env).
 * Every problem is collected and reported at once, each saying what to set.
 */
export interface TwilioAdminCredential {
  /** The parent account. */
  accountSid: string;
  /** Basic-auth username: the account SID (auth token) or a Main API key SID. */
  username: string;
  password: Secret;
}

export type StoreConfig =
  | {
      kind: 'file';
      dir: string;
      keyBase64?: Secret;
      keyFile: string;
      /** FILE_STORE_KEY_FILE named the key file: it must exist (a missing mount must not mint a new key). */
      keyFileGiven?: boolean;
    }
  | { kind: 'aws'; region?: string; endpoint?: string }
  | {
      kind: 'vault';
      addr: string;
      token?: Secret;
      approle?: { roleId: string; secretId: Secret; mount?: string };
      mount: string;
      namespace?: string;
      /** VAULT_TLS_SKIP_VERIFY=true: accept any certificate (logged as a warning). node-vault's own VAULT_SKIP_VERIFY is ignored. */
      tlsSkipVerify: boolean;
      /** VAULT_CACERT: a PEM file of the CA(s) that signed Vault's certificate. */
      caCertFile?: string;
    };

/**
 * Which proxies may set X-Forwarded-For (TRUST_PROXY): a number of hops, or the proxies' addresses
 * and CIDRs. Never "any": that would let every client choose the address it is limited and audited by.
 */
export type TrustProxy = false | number | string[];

export interface Config {
  dataDir: string;
  redisUrl?: string;
  /**
   * Where Redis is: REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES (with REDIS_PASSWORD,
   * REDIS_TLS…; see config-redis.ts). Unset: the embedded redis-server in DATA_DIR.
   */
  redis?: RedisTarget;
  redisPrefix: string;
  /** REDIS_WAIT_REPLICAS (default 1 with Sentinel, else 0) and REDIS_WAIT_TIMEOUT_MS: an API change waits for replicas before its answer. */
  redisWait: { replicas: number; timeoutMs: number };
  /** How long start-up waits for REDIS_URL to answer before giving up (REDIS_CONNECT_TIMEOUT_SECONDS). */
  redisConnectTimeoutMs: number;
  host: string;
  port: number;
  /**
   * METRICS_PORT (0 = none): /metrics and /healthz on HOST:METRICS_PORT, for a worker-only process
   * and for the API too, which then no longer serves /metrics on PORT.
   */
  metricsPort: number;
  logLevel: string;
  /** `json` (one object a line, the default) or `pretty` (for a terminal). */
  logFormat: 'json' | 'pretty';
  twilio?: TwilioAdminCredential;
  twilioBaseUrl?: string;
  twilioTimeoutMs: number;
  twilioMaxConcurrency: number;
  keyNamePrefix: string;
  store: StoreConfig;
  secretPathTemplate: string;
  drainSeconds: number;
  apiTokens: string;
  workerConcurrency: number;
  /** Rotations one batch keeps in flight at once (BATCH_MAX_IN_FLIGHT); the Twilio cap paces them anyway. */
  batchMaxInFlight: number;
  jobLockMs: number;
  stalledIntervalMs: number;
  /** Finished rotation records older than this are removed (0 keeps them forever). */
  retentionDays: number;
  trustProxy: TrustProxy;
  /** Settings that work but weaken something, or that Rotator ignores: logged as warnings at start. */
  warnings: string[];
  /** Test-only: named lines at which the worker kills itself with SIGKILL (see workers/crash-points.ts). */
  crashPoints: string[];
  /** HTTP API: OIDC, rate limits, CORS, idempotency, server-sent events (readApi below). */
  api: ApiConfig;
  /** Default rotation policy of a managed subaccount (ROTATION_POLICY). */
  rotationPolicy: RotationPolicyName;
  /** How often a worker re-reads the subaccount list from Twilio (ACCOUNT_SYNC_SECONDS; 0 = never). */
  accountSyncIntervalMs: number;
  /** How often workers run the compliance scan (COMPLIANCE_SCAN_SECONDS; 0 = only on request). */
  complianceScanIntervalMs: number;
  /**
   * How many compliance rows an API process keeps as their JSON text between pages
   * (COMPLIANCE_KEEP_ROWS; ~0.9 KB of heap each, so the default 50,000 is ~43 MB; 0 keeps none).
   */
  complianceKeepRows: number;
  /** The scheduled-rotation planner (issue 13): its tick, and what one tick may start. */
  planner: PlannerConfig;
  /** What the inventory does with a subaccount nobody said to manage (MANAGE_NEW_SUBACCOUNTS): off, label or all. */
  manageNewSubaccounts: 'off' | 'label' | 'all';
  /** Consumer pickup tracking (issue 15). */
  consumers: ConsumersConfig;
  /** Notifications to Slack and a signed webhook (NOTIFY_*; issue 18). */
  notify: NotifyConfig;
  /** Audit trail retention, export and checkpoints (AUDIT_*; issue 18). */
  auditRetention: AuditRetentionConfig;
  /** SHUTDOWN_DELAY_SECONDS: after SIGTERM, /readyz answers 503 this long before the listener closes (load balancers notice). */
  shutdownDelayMs: number;
  /** SHUTDOWN_TIMEOUT_SECONDS: the drain's limit; a step still running then is left to the stalled-job check (another worker resumes it). */
  shutdownTimeoutMs: number;
}

export interface NotifyConfig {
  /** NOTIFY_SLACK_WEBHOOK_URL: a Slack incoming webhook (its URL is itself the credential). */
  slackUrl?: Secret;
  /** NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET: a generic webhook, its body signed with the secret. */
  webhook?: { url: string; secret: Secret };
  /** NOTIFY_EVENTS: the event types sent (default all). */
  events: NotifyEventType[];
  /** NOTIFY_MAX_ATTEMPTS: deliveries tried per event and sink before it counts as failed. */
  maxAttempts: number;
  /** NOTIFY_BACKOFF_SECONDS: the first retry's delay; each next one doubles. */
  backoffMs: number;
  /** NOTIFY_TIMEOUT_SECONDS: one delivery attempt's deadline. */
  timeoutMs: number;
}

export interface AuditRetentionConfig {
  /** AUDIT_RETENTION_DAYS: entries older than this are exported then trimmed (0 = keep everything, the default). */
  days: number;
  /** AUDIT_EXPORT_DIR: a directory for JSON-lines export files, or `-` for standard output. */
  exportTo?: string;
  /** AUDIT_CHECKPOINT_KEY: signs the checkpoint entry a trim leaves (HMAC-SHA256); required with retention. */
  checkpointKey?: Secret;
  /** AUDIT_TRIM_INTERVAL_SECONDS: how often a worker looks for entries past retention. */
  intervalMs: number;
}

export interface ConsumersConfig {
  /** CONSUMER_EXPIRY_SECONDS: a consumer that has not reported for this long no longer counts (nor holds a rotation). */
  expiryMs: number;
  /** CONSUMER_GATE_RECHECK_SECONDS: how often a rotation waiting for consumers looks again when no heartbeat wakes it. */
  recheckMs: number;
}

export interface PlannerConfig {
  /** Workers tick the planner (PLANNER_ENABLED, default true); the API reads and steers it either way. */
  enabled: boolean;
  /** PLANNER_TICK_SECONDS: the Job Scheduler's fixed `every`. */
  tickMs: number;
  /** PLANNER_MAX_STARTS_PER_TICK (default TWILIO_MAX_CONCURRENCY): the pace of catch-up after an outage. */
  maxStartsPerTick: number;
  /** PLANNER_LEASE_SECONDS: how long a claimed credential is held before another tick may claim it again. */
  leaseMs: number;
  /** PLANNER_RETRY_AFTER_FAILURE_SECONDS: a credential whose scheduled rotation failed is tried again after this. */
  retryAfterFailureMs: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`configuration problems:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

const SID = /^AC[0-9a-f]{32}$/;
const KEY_SID = /^SK[0-9a-f]{32}$/;

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = readEnvironment(), opts: { requireTwilio?: boolean } = {}): Config {
  const problems: string[] = [];
  const str = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const int = (name: string, fallback: number, min = 0): number => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min) {
      problems.push(`${name} must be a number ≥ ${min} (got "${raw}")`);
      return fallback;
    }
    return n;
  };

  const warnings: string[] = [];
  const dataDir = resolve(str('DATA_DIR') ?? '.data');
  const twilio = readTwilio(str, problems, opts.requireTwilio ?? true);
  const store = readStore(str, problems, warnings, dataDir);
  const baseUrl = str('TWILIO_BASE_URL');
  if (baseUrl && !/^https?:\/\/[^/]+\/?$/.test(baseUrl)) problems.push(`TWILIO_BASE_URL must be an origin such as http://127.0.0.1:4010 (got "${baseUrl}")`);
  const template = str('SECRET_PATH_TEMPLATE') ?? 'twilio/{accountSid}';
  if (!template.includes('{accountSid}')) problems.push('SECRET_PATH_TEMPLATE must contain {accountSid}, or every subaccount would share one secret');
  const prefix = str('KEY_NAME_PREFIX') ?? 'rotator';
  // FriendlyName is `<prefix>:<uuid>` and Twilio caps it at 64 characters.
  if (prefix.length + 1 + 36 > 64 || prefix.includes(':')) problems.push('KEY_NAME_PREFIX must be at most 27 characters and contain no ":"');

  const twilioMaxConcurrency = int('TWILIO_MAX_CONCURRENCY', 50, 1);
  const redis = readRedisTarget(str, int, problems);
  const cfg: Config = {
    dataDir,
    redisUrl: str('REDIS_URL'),
    ...redis,
    redisConnectTimeoutMs: int('REDIS_CONNECT_TIMEOUT_SECONDS', 15, 1) * 1000,
    host: str('HOST') ?? '127.0.0.1',
    port: int('PORT', 8080),
    metricsPort: int('METRICS_PORT', 0),
    logLevel: str('LOG_LEVEL') ?? 'info',
    logFormat: readLogFormat(str, problems),
    twilio,
    twilioBaseUrl: baseUrl?.replace(/\/$/, ''),
    twilioTimeoutMs: int('TWILIO_TIMEOUT_MS', 10_000, 100),
    twilioMaxConcurrency,
    keyNamePrefix: prefix,
    store,
    secretPathTemplate: template,
    drainSeconds: int('DRAIN_SECONDS', 900),
    apiTokens: str('API_TOKENS') ?? '',
    workerConcurrency: int('WORKER_CONCURRENCY', 10, 1),
    batchMaxInFlight: int('BATCH_MAX_IN_FLIGHT', 50, 1),
    jobLockMs: int('JOB_LOCK_MS', 30_000, 500),
    stalledIntervalMs: int('STALLED_INTERVAL_MS', 30_000, 200),
    retentionDays: int('RETENTION_DAYS', 400),
    trustProxy: readTrustProxy(str('TRUST_PROXY'), problems),
    warnings,
    crashPoints: (str('ROTATOR_CRASH_POINTS') ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    api: readApi(str, int, problems),
    rotationPolicy: readPolicy(str, problems),
    accountSyncIntervalMs: int('ACCOUNT_SYNC_SECONDS', 3600) * 1000,
    complianceScanIntervalMs: int('COMPLIANCE_SCAN_SECONDS', 21_600) * 1000,
    complianceKeepRows: int('COMPLIANCE_KEEP_ROWS', 50_000),
    planner: readPlanner(str, int, problems, twilioMaxConcurrency),
    manageNewSubaccounts: readManageMode(str, problems),
    notify: readNotify(str, int, problems),
    auditRetention: readAuditRetention(str, int, problems),
    shutdownDelayMs: Math.round(int('SHUTDOWN_DELAY_SECONDS', 0) * 1000),
    shutdownTimeoutMs: Math.round(int('SHUTDOWN_TIMEOUT_SECONDS', 30, 1) * 1000),
    consumers: { expiryMs: Math.round(int('CONSUMER_EXPIRY_SECONDS', 300, 1) * 1000), recheckMs: Math.round(int('CONSUMER_GATE_RECHECK_SECONDS', 30, 0.1) * 1000) },
  };
  if (cfg.metricsPort > 65_535 || !Number.isInteger(cfg.metricsPort)) problems.push(`METRICS_PORT must be a port number, 1–65535, or 0 for none (got "${str('METRICS_PORT')}")`);
  else if (cfg.metricsPort !== 0 && cfg.metricsPort === cfg.port) problems.push(`METRICS_PORT must differ from PORT (${cfg.port}): it is a listener of its own, to bind or firewall apart from the API`);
  if (problems.length) throw new ConfigError(problems);
  return cfg;
}

function readTwilio(str: (n: string) => string | undefined, problems: string[], required: boolean): TwilioAdminCredential | undefined {
  const accountSid = str('TWILIO_ACCOUNT_SID');
  const authToken = str('TWILIO_AUTH_TOKEN');
  const apiKey = str('TWILIO_API_KEY');
  const apiSecret = str('TWILIO_API_SECRET');
  if (!accountSid) {
    if (required) problems.push('TWILIO_ACCOUNT_SID is required: the parent account whose subaccounts Rotator manages');
    return undefined;
  }
  if (!SID.test(accountSid)) problems.push('TWILIO_ACCOUNT_SID must be AC followed by 32 hex digits');
  if (apiKey) {
    if (!KEY_SID.test(apiKey)) problems.push('TWILIO_API_KEY must be SK followed by 32 hex digits (a Main key)');
    if (!apiSecret) problems.push('TWILIO_API_SECRET is required with TWILIO_API_KEY');
    return apiSecret ? { accountSid, username: apiKey, password: new Secret(apiSecret) } : undefined;
  }
  if (!authToken) {
    problems.push('set TWILIO_AUTH_TOKEN, or TWILIO_API_KEY and TWILIO_API_SECRET (a Main key: Standard keys cannot manage keys)');
    return undefined;
  }
  return { accountSid, username: accountSid, password: new Secret(authToken) };
}

function readStore(str: (n: string) => string | undefined, problems: string[], warnings: string[], dataDir: string): StoreConfig {
  const kind = str('SECRET_STORE') ?? 'file';
  switch (kind) {
    case 'file': {
      const key = str('FILE_STORE_KEY');
      const keyFile = str('FILE_STORE_KEY_FILE');
      if (key && keyFile) problems.push('set FILE_STORE_KEY or FILE_STORE_KEY_FILE, not both');
      return {
        kind,
        dir: resolve(str('FILE_STORE_PATH') ?? resolve(dataDir, 'secrets')),
        ...(key ? { keyBase64: new Secret(key) } : {}),
        keyFile: resolve(keyFile ?? resolve(dataDir, 'file-store.key')),
        ...(keyFile ? { keyFileGiven: true } : {}),
      };
    }
    case 'aws':
      return { kind, region: str('AWS_REGION') ?? str('AWS_DEFAULT_REGION'), endpoint: str('AWS_ENDPOINT_URL_SECRETS_MANAGER') ?? str('AWS_ENDPOINT_URL') };
    case 'vault': {
      const addr = str('VAULT_ADDR');
      const token = str('VAULT_TOKEN');
      const roleId = str('VAULT_ROLE_ID');
      const secretId = str('VAULT_SECRET_ID');
      if (!addr) problems.push('VAULT_ADDR is required with SECRET_STORE=vault (e.g. https://vault.example.com:8200)');
      if (!token && !(roleId && secretId)) problems.push('set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID for AppRole login');
      const skip = str('VAULT_TLS_SKIP_VERIFY') ?? 'false';
      if (skip !== 'true' && skip !== 'false') problems.push(`VAULT_TLS_SKIP_VERIFY must be true or false (got "${skip}")`);
      if (skip === 'true') warnings.push('VAULT_TLS_SKIP_VERIFY=true: Vault\'s TLS certificate is not verified, so anyone on the network path can receive the Vault token; set VAULT_CACERT to the CA file instead');
      // node-vault reads VAULT_SKIP_VERIFY as "any text turns verification off" (even "false"): Rotator overrides it.
      if (str('VAULT_SKIP_VERIFY') !== undefined) warnings.push('VAULT_SKIP_VERIFY is ignored: Rotator always verifies Vault\'s certificate unless VAULT_TLS_SKIP_VERIFY=true (trust a private CA with VAULT_CACERT)');
      const caCert = str('VAULT_CACERT');
      return {
        kind,
        addr: addr ?? '',
        ...(token ? { token: new Secret(token) } : {}),
        ...(roleId && secretId ? { approle: { roleId, secretId: new Secret(secretId), mount: str('VAULT_APPROLE_MOUNT') } } : {}),
        mount: str('VAULT_KV_MOUNT') ?? 'secret',
        namespace: str('VAULT_NAMESPACE'),
        tlsSkipVerify: skip === 'true',
        ...(caCert ? { caCertFile: resolve(caCert) } : {}),
      };
    }
    default:
      problems.push(`SECRET_STORE must be file, aws or vault (got "${kind}")`);
      return { kind: 'file', dir: resolve(dataDir, 'secrets'), keyFile: resolve(dataDir, 'file-store.key') };
  }
}

/**
 * The store and secret-path settings alone, by the names Rotator reads (SECRET_STORE, FILE_STORE_*,
 * AWS_*, VAULT_*, SECRET_PATH_TEMPLATE): what the client library (src/client) needs to read the
 * credentials Rotator writes. Throws ConfigError naming every problem.
 */
export function loadStoreConfig(env: Env = process.env): { store: StoreConfig; secretPathTemplate: string; twilioBaseUrl?: string } {
  const problems: string[] = [];
  const str = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const store = readStore(str, problems, [], resolve(str('DATA_DIR') ?? '.data'));
  const secretPathTemplate = str('SECRET_PATH_TEMPLATE') ?? 'twilio/{accountSid}';
  if (!secretPathTemplate.includes('{accountSid}')) problems.push('SECRET_PATH_TEMPLATE must contain {accountSid}');
  const baseUrl = str('TWILIO_BASE_URL');
  if (baseUrl && !/^https?:\/\/[^/]+\/?$/.test(baseUrl)) problems.push(`TWILIO_BASE_URL must be an origin such as http://127.0.0.1:4010 (got "${baseUrl}")`);
  if (problems.length) throw new ConfigError(problems);
  return { store, secretPathTemplate, ...(baseUrl ? { twilioBaseUrl: baseUrl.replace(/\/$/, '') } : {}) };
}

/** process.env, with a ./.env file filling names that are not already set. */
export function readEnvironment(): Env {
  if (existsSync('.env')) loadDotenv({ path: '.env', quiet: true });
  return process.env;
}

export type ApiRole = 'viewer' | 'operator' | 'admin';
export type RotationPolicyName = 'quarterly' | 'monthly';

/** Bearer JWTs from an SSO provider, verified against its JWKS (OIDC_*). */
export interface OidcConfig {
  jwksUrl: string;
  issuer?: string;
  audience?: string;
  /** Claim holding the user's groups or roles (dotted path allowed): OIDC_ROLE_CLAIM, default `roles`. */
  roleClaim: string;
  /** Claim value → role (`OIDC_ROLE_MAP=rotator-admins:admin,sre:operator`); unset: the values are role names. */
  roleMap?: Record<string, ApiRole>;
}

/**
 * The dashboard's SSO sign-in (OIDC_CLIENT_ID and friends): an authorization code flow with PKCE,
 * state and nonce against OIDC_ISSUER; the role comes from the ID token's OIDC_ROLE_CLAIM through
 * OIDC_ROLE_MAP, as for bearer JWTs.
 */
export interface OidcSignInConfig {
  issuer: string;
  clientId: string;
  clientSecret: Secret;
  /** OIDC_REDIRECT_URL: this API's /v1/session/oidc/callback as the browser reaches it (registered at the provider). */
  redirectUrl: string;
  /** OIDC_SCOPES: asked for beyond `openid` (default `profile email`; add the one that releases the role claim). */
  scope: string;
  roleClaim: string;
  roleMap?: Record<string, ApiRole>;
}

export const OIDC_CALLBACK_PATH = '/v1/session/oidc/callback';

export interface ApiConfig {
  oidc?: OidcConfig;
  /** SSO sign-in for the dashboard (absent: sign-in by pasted token only). */
  oidcSignIn?: OidcSignInConfig;
  /** Requests per window, per client IP and per token name (RATE_LIMIT_MAX, RATE_LIMIT_WINDOW). */
  rateLimitMax: number;
  rateLimitWindowMs: number;
  /** Origins allowed by CORS; empty = no CORS headers (browsers refuse cross-origin calls). */
  corsOrigins: string[];
  idempotencyTtlSeconds: number;
  sseMaxClients: number;
  sseHeartbeatMs: number;
}

const API_ROLES: readonly string[] = ['viewer', 'operator', 'admin'];

function readApi(str: (n: string) => string | undefined, int: (n: string, fallback: number, min?: number) => number, problems: string[]): ApiConfig {
  const jwksUrl = str('OIDC_JWKS_URL');
  let oidc: OidcConfig | undefined;
  if (jwksUrl) {
    const jwksProblem = checkJwksUrl(jwksUrl);
    if (jwksProblem) problems.push(jwksProblem);
    const roleMap = readRoleMap(str, problems);
    oidc = { jwksUrl, issuer: str('OIDC_ISSUER'), audience: str('OIDC_AUDIENCE'), roleClaim: str('OIDC_ROLE_CLAIM') ?? 'roles', roleMap };
    if (!oidc.issuer || !oidc.audience) problems.push('OIDC_ISSUER and OIDC_AUDIENCE are required with OIDC_JWKS_URL: without them a token minted for another application would be accepted');
  }
  const oidcSignIn = readOidcSignIn(str, problems);
  const window = str('RATE_LIMIT_WINDOW') ?? '60s';
  const m = /^(\d+)\s*(ms|s|m|h)?$/.exec(window);
  if (!m || Number(m[1]) <= 0) problems.push(`RATE_LIMIT_WINDOW must be a duration such as 60s, 1m or 500ms (got "${window}")`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m?.[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  const corsOrigins = (str('CORS_ORIGINS') ?? '').split(',').map((o) => o.trim()).filter(Boolean);
  for (const o of corsOrigins) if (!/^https?:\/\/[^/]+$/.test(o)) problems.push(`CORS_ORIGINS entries must be origins such as https://ops.example.com (got "${o}")`);
  return {
    oidc,
    oidcSignIn,
    rateLimitMax: int('RATE_LIMIT_MAX', 300, 1),
    rateLimitWindowMs: m ? Number(m[1]) * unit : 60_000,
    corsOrigins,
    idempotencyTtlSeconds: int('IDEMPOTENCY_TTL_SECONDS', 86_400, 60),
    sseMaxClients: int('SSE_MAX_CLIENTS', 200, 1),
    sseHeartbeatMs: int('SSE_HEARTBEAT_SECONDS', 15, 1) * 1000,
  };
}

/** OIDC_ROLE_MAP (`rotator-admins:admin,sre:operator`); unset: the claim's values are role names. */
function readRoleMap(str: (n: string) => string | undefined, problems: string[]): Record<string, ApiRole> | undefined {
  const mapSpec = str('OIDC_ROLE_MAP');
  if (!mapSpec) return undefined;
  const roleMap: Record<string, ApiRole> = {};
  for (const part of mapSpec.split(',').map((p) => p.trim()).filter(Boolean)) {
    const at = part.lastIndexOf(':');
    const value = part.slice(0, at);
    const role = part.slice(at + 1);
    if (at <= 0 || !API_ROLES.includes(role)) problems.push(`OIDC_ROLE_MAP entry "${part}" must be <claim value>:<viewer|operator|admin>`);
    else roleMap[value] = role as ApiRole;
  }
  return roleMap;
}

function readOidcSignIn(str: (n: string) => string | undefined, problems: string[]): OidcSignInConfig | undefined {
  const clientId = str('OIDC_CLIENT_ID');
  const clientSecret = str('OIDC_CLIENT_SECRET');
  const redirectUrl = str('OIDC_REDIRECT_URL');
  if (!clientId && !clientSecret && !redirectUrl) return undefined;
  const issuer = str('OIDC_ISSUER');
  const missing = [!issuer && 'OIDC_ISSUER', !clientId && 'OIDC_CLIENT_ID', !clientSecret && 'OIDC_CLIENT_SECRET', !redirectUrl && 'OIDC_REDIRECT_URL'].filter(Boolean);
  if (missing.length) {
    problems.push(`SSO sign-in needs OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET and OIDC_REDIRECT_URL together: ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not set`);
    return undefined;
  }
  const issuerProblem = checkHttpsUrl('OIDC_ISSUER', issuer!, 'anyone on the network path could answer for the identity provider and sign in as admin');
  if (issuerProblem) problems.push(issuerProblem);
  let redirect: URL | undefined;
  try {
    redirect = new URL(redirectUrl!);
  } catch {
    problems.push(`OIDC_REDIRECT_URL must be an absolute URL ending in ${OIDC_CALLBACK_PATH} (got "${redirectUrl}")`);
  }
  if (redirect && (redirect.pathname !== OIDC_CALLBACK_PATH || redirect.search || redirect.hash || !/^https?:$/.test(redirect.protocol))) {
    problems.push(`OIDC_REDIRECT_URL must be this API's ${OIDC_CALLBACK_PATH} as the browser reaches it, such as https://rotator.example.com${OIDC_CALLBACK_PATH} (got "${redirectUrl}")`);
  }
  return {
    issuer: issuer!,
    clientId: clientId!,
    clientSecret: new Secret(clientSecret!),
    redirectUrl: redirectUrl!,
    scope: ['openid', ...(str('OIDC_SCOPES') ?? 'profile email').split(/[\s,]+/).filter((x) => x && x !== 'openid')].join(' '),
    roleClaim: str('OIDC_ROLE_CLAIM') ?? 'roles',
    // Reported once: readApi already read it when OIDC_JWKS_URL is set.
    roleMap: readRoleMap(str, str('OIDC_JWKS_URL') ? [] : problems),
  };
}

function readPlanner(str: (n: string) => string | undefined, int: (n: string, fallback: number, min?: number) => number, problems: string[], twilioMaxConcurrency: number): PlannerConfig {
  const enabled = str('PLANNER_ENABLED') ?? 'true';
  if (enabled !== 'true' && enabled !== 'false') problems.push(`PLANNER_ENABLED must be true or false (got "${enabled}")`);
  // Seconds, fractions allowed (tests tick every 0.2 s); a tick more often than that is only load.
  const tickSeconds = int('PLANNER_TICK_SECONDS', 60, 0.1);
  return {
    enabled: enabled !== 'false',
    tickMs: Math.round(tickSeconds * 1000),
    maxStartsPerTick: Math.floor(int('PLANNER_MAX_STARTS_PER_TICK', twilioMaxConcurrency, 1)),
    leaseMs: Math.round(int('PLANNER_LEASE_SECONDS', 600, 1) * 1000),
    retryAfterFailureMs: Math.round(int('PLANNER_RETRY_AFTER_FAILURE_SECONDS', 3600, 1) * 1000),
  };
}

function readLogFormat(str: (n: string) => string | undefined, problems: string[]): 'json' | 'pretty' {
  const f = str('LOG_FORMAT') ?? 'json';
  if (f !== 'json' && f !== 'pretty') {
    problems.push(`LOG_FORMAT must be json or pretty (got "${f}")`);
    return 'json';
  }
  return f;
}

function readPolicy(str: (n: string) => string | undefined, problems: string[]): RotationPolicyName {
  const p = str('ROTATION_POLICY') ?? 'quarterly';
  if (p !== 'quarterly' && p !== 'monthly') {
    problems.push(`ROTATION_POLICY must be quarterly (90 days) or monthly (30 days) (got "${p}")`);
    return 'quarterly';
  }
  return p;
}

/**
 * `off` by default: an upgraded deployment keeps its behaviour (no key is created at Twilio for a
 * subaccount nobody asked Rotator to manage); `label` or `all` are an explicit choice.
 */
function readManageMode(str: (n: string) => string | undefined, problems: string[]): 'off' | 'label' | 'all' {
  const m = str('MANAGE_NEW_SUBACCOUNTS') ?? 'off';
  if (m !== 'off' && m !== 'label' && m !== 'all') {
    problems.push(`MANAGE_NEW_SUBACCOUNTS must be off (record new subaccounts only), label (manage a subaccount once it has a label) or all (manage every active subaccount) (got "${m}")`);
    return 'off';
  }
  return m;
}

/**
 * The JWKS decides who is admin: fetched over plain HTTP, anyone on the path could substitute their
 * own keys and mint tokens. HTTPS only; plain HTTP to this host (loopback) for tests and sidecars.
 */
function checkJwksUrl(raw: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return `OIDC_JWKS_URL must be an https URL (got "${raw}")`;
  }
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:' && isLoopback(url.hostname)) return undefined;
  return `OIDC_JWKS_URL must be an https URL: over ${url.protocol.replace(':', '')} anyone on the network path could replace the identity provider's keys and mint admin tokens (plain http is allowed only to localhost; got "${raw}")`;
}

function checkHttpsUrl(name: string, raw: string, why: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return `${name} must be an https URL (got "${raw}")`;
  }
  if (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopback(url.hostname))) return undefined;
  return `${name} must be an https URL: over ${url.protocol.replace(':', '')} ${why} (plain http is allowed only to localhost; got "${raw}")`;
}

function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

const TRUST_PROXY_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

/**
 * TRUST_PROXY: `false` (the default: the socket's address is the client's), a hop count (`1`: one
 * proxy in front; its X-Forwarded-For entry is used, anything the client put before it is not), or
 * the proxies' addresses and CIDRs (and proxy-addr's names loopback, linklocal, uniquelocal).
 */
function readTrustProxy(raw: string | undefined, problems: string[]): TrustProxy {
  if (raw === undefined || raw === 'false') return false;
  const fix = 'set the addresses or CIDRs of your proxies (TRUST_PROXY=10.0.0.0/8,127.0.0.1) or the number of proxies in front of Rotator (TRUST_PROXY=1)';
  if (raw === 'true') {
    problems.push(`TRUST_PROXY=true would let any client choose its own address (X-Forwarded-For), escaping the per-address rate limit and forging the audit trail's ip: ${fix}`);
    return false;
  }
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw);
    if (hops < 1 || hops > 10) problems.push(`TRUST_PROXY as a hop count must be 1–10 (got "${raw}"); ${fix}`);
    return hops;
  }
  const entries = raw.split(',').map((e) => e.trim()).filter(Boolean);
  const bad = entries.filter((e) => !TRUST_PROXY_NAMES.includes(e) && !isAddressOrCidr(e));
  if (bad.length) problems.push(`TRUST_PROXY entries must be IP addresses or CIDRs (got ${bad.map((b) => `"${b}"`).join(', ')}): ${fix}`);
  return entries;
}

function isAddressOrCidr(entry: string): boolean {
  const [addr = '', prefix, ...rest] = entry.split('/');
  const family = isIP(addr);
  if (!family || rest.length) return false;
  if (prefix === undefined) return true;
  if (!/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}

/** A receiver's URL: https, or plain http to this host (tests, a local relay). The URL itself is never logged. */
function checkNotifyUrl(name: string, raw: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return `${name} must be an https URL`;
  }
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:' && isLoopback(url.hostname)) return undefined;
  return `${name} must be an https URL: notifications over plain ${url.protocol.replace(':', '')} can be read and forged on the way (plain http is allowed only to localhost)`;
}

function readNotify(str: (n: string) => string | undefined, int: (n: string, fallback: number, min?: number) => number, problems: string[]): NotifyConfig {
  const slack = str('NOTIFY_SLACK_WEBHOOK_URL');
  const url = str('NOTIFY_WEBHOOK_URL');
  const secret = str('NOTIFY_WEBHOOK_SECRET');
  if (slack) {
    const p = checkNotifyUrl('NOTIFY_SLACK_WEBHOOK_URL', slack);
    if (p) problems.push(p);
  }
  if (url) {
    const p = checkNotifyUrl('NOTIFY_WEBHOOK_URL', url);
    if (p) problems.push(p);
    if (!secret) problems.push('NOTIFY_WEBHOOK_SECRET is required with NOTIFY_WEBHOOK_URL: receivers check the body\'s signature with it');
    else if (secret.length < 16) problems.push('NOTIFY_WEBHOOK_SECRET must be at least 16 characters (e.g. openssl rand -hex 32)');
  } else if (secret) problems.push('NOTIFY_WEBHOOK_SECRET is set without NOTIFY_WEBHOOK_URL: set the URL the signed notifications go to');
  const spec = str('NOTIFY_EVENTS') ?? 'all';
  const events: NotifyEventType[] = [];
  for (const e of spec.split(',').map((x) => x.trim()).filter(Boolean)) {
    if (e === 'all') events.push(...NOTIFY_EVENTS);
    else if ((NOTIFY_EVENTS as readonly string[]).includes(e)) events.push(e as NotifyEventType);
    else problems.push(`NOTIFY_EVENTS entry "${e}" must be all or one of ${NOTIFY_EVENTS.join(', ')}`);
  }
  return {
    ...(slack ? { slackUrl: new Secret(slack) } : {}),
    ...(url && secret ? { webhook: { url, secret: new Secret(secret) } } : {}),
    events: [...new Set(events)],
    maxAttempts: Math.floor(int('NOTIFY_MAX_ATTEMPTS', 10, 1)),
    backoffMs: Math.round(int('NOTIFY_BACKOFF_SECONDS', 5, 0.01) * 1000),
    timeoutMs: Math.round(int('NOTIFY_TIMEOUT_SECONDS', 10, 0.1) * 1000),
  };
}

function readAuditRetention(str: (n: string) => string | undefined, int: (n: string, fallback: number, min?: number) => number, problems: string[]): AuditRetentionConfig {
  const days = int('AUDIT_RETENTION_DAYS', 0);
  const exportTo = str('AUDIT_EXPORT_DIR');
  const key = str('AUDIT_CHECKPOINT_KEY');
  if (days > 0) {
    if (!exportTo) problems.push('AUDIT_EXPORT_DIR is required with AUDIT_RETENTION_DAYS: trimmed entries are exported first, to a directory or to standard output (-)');
    if (!key) problems.push('AUDIT_CHECKPOINT_KEY is required with AUDIT_RETENTION_DAYS: it signs the checkpoint a trim leaves, so the shortened chain still verifies (e.g. openssl rand -hex 32)');
  }
  if (key && key.length < 32) problems.push('AUDIT_CHECKPOINT_KEY must be at least 32 characters (e.g. openssl rand -hex 32)');
  return {
    days,
    ...(exportTo ? { exportTo: exportTo === '-' ? '-' : resolve(exportTo) } : {}),
    ...(key ? { checkpointKey: new Secret(key) } : {}),
    intervalMs: Math.round(int('AUDIT_TRIM_INTERVAL_SECONDS', 3600, 0.1) * 1000),
  };
}
