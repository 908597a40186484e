import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import helmet from 'helmet';
import cors from '@fastify/cors';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RotationRepository } from '../state/rotations.ts';
import type { RotationService } from '../service/rotations.ts';
import type { SubaccountChecker } from '../service/subaccounts.ts';
import type { AccountRepository } from '../state/accounts.ts';
import type { AuditLog } from '../state/audit.ts';
import type { BatchService } from '../service/batches.ts';
import { Metrics } from '../metrics.ts';
import type { TokenEntry } from './tokens.ts';
import { createOidcSignIn, logRequest, type OidcVerifier } from './oidc.ts';
import type { OidcSignInConfig } from '../config.ts';
import { IdempotencyStore } from './idempotency.ts';
import { clientErrorHandler, errorsPlugin, frameworkErrors } from './plugins/errors.ts';
import { authPlugin } from './plugins/auth.ts';
import { rateLimitPlugin } from './plugins/rate-limit.ts';
import { auditPlugin } from './plugins/audit.ts';
import { docsPlugin } from './plugins/docs.ts';
import { rotationRoutes } from './routes/rotations.ts';
import { replicationPlugin } from './plugins/replication.ts';
import { healthRoutes, readinessProbe, type ReadinessCheck } from './routes/health.ts';
import { statusRoutes } from './routes/status.ts';
import { accountFleetRoutes, accountRoutes } from './routes/accounts.ts';
import { policyRoutes } from './routes/policies.ts';
import { credentialRoutes } from './routes/credentials.ts';
import type { CredentialRepository } from '../state/credentials.ts';
import type { PolicyRepository } from '../state/policies.ts';
import { readFleetPage } from '../state/fleet-page.ts';
import { FleetAdmin, type FleetChangeListener } from '../service/fleet-admin.ts';
import type { ManageMode } from '../service/accounts.ts';
import { eventRoutes } from './routes/events.ts';
import { auditRoutes } from './routes/audit.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { complianceRoutes, type ComplianceRoutesDeps } from './routes/compliance.ts';
import { scheduleRoutes } from './routes/schedule.ts';
import type { Planner } from '../service/planner.ts';
import { batchRoutes } from './routes/batches.ts';
import { consumerRoutes } from './routes/consumers.ts';
import type { ConsumerRegistry } from '../state/consumers.ts';
import { sessionRoutes } from './routes/session.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { SessionStore, SessionStreams } from '../state/sessions.ts';

export interface AppDeps {
  repo: RotationRepository;
  service: RotationService;
  /** Whether an account may be rotated (an active subaccount of the parent), asked before a rotation is created. */
  subaccounts: SubaccountChecker;
  accounts: AccountRepository;
  /** The fleet (issue 13): managed credentials and named policies. */
  credentials: CredentialRepository;
  policies: PolicyRepository;
  /** MANAGE_NEW_SUBACCOUNTS: whether labelling a subaccount starts managing its default credential (default off). */
  manageNewSubaccounts?: ManageMode;
  /** Told after a change that may move credentials' schedules (labels, overrides, pauses, policies, a new credential): the planner re-plans them. */
  onFleetChange?: FleetChangeListener;
  audit: AuditLog;
  batches: BatchService;
  /** Idempotency keys and the events stream's replay reads. */
  redis: Redis;
  /** A new Redis connection for one event-stream client (blocking reads). */
  connectRedis: () => Redis;
  tokens: readonly TokenEntry[];
  oidc?: OidcVerifier;
  /** The dashboard's SSO sign-in (OIDC_CLIENT_ID …; absent: by pasted token only). */
  oidcSignIn?: OidcSignInConfig;
  readiness: Record<string, ReadinessCheck>;
  /** Reported by /readyz without making it fail (see healthRoutes). */
  advisoryReadiness?: Record<string, ReadinessCheck>;
  /** True once the process is shutting down: /readyz answers 503 so load balancers stop sending new requests. */
  draining?: () => boolean;
  metrics?: Metrics;
  /** GET /metrics on the API's port (default); false when METRICS_PORT serves it on a listener of its own. */
  serveMetrics?: boolean;
  logger?: Logger | false;
  /** TRUST_PROXY: hop count or proxy addresses/CIDRs (config.ts refuses `true`). */
  trustProxy?: false | number | string[];
  bodyLimit?: number;
  rateLimit?: { max: number; windowMs: number };
  corsOrigins?: readonly string[];
  idempotencyTtlSeconds?: number;
  sse?: { heartbeatMs?: number; maxClients?: number };
  now?: () => number;
  version?: string;
  /** GET /v1/compliance, the on-demand scan and the sprawl-key delete (issue 13 item 6). */
  compliance?: Omit<ComplianceRoutesDeps, 'now'>;
  /** The scheduled-rotation planner: GET /v1/schedule and the fleet-wide pause (absent: no such routes). */
  planner?: Pick<Planner, 'view' | 'pause' | 'resume' | 'paused'>;
  /** REDIS_WAIT_REPLICAS: wait for a replica to hold a change before answering it (plugins/replication.ts). */
  replicate?: () => Promise<void>;
  /** Consumer pickup tracking (issue 15): heartbeats, who uses which key, force-promote (absent: no such routes). */
  consumers?: ConsumerRegistry;
  /** Wake a rotation waiting as a delayed job (a heartbeat moved its last consumer). */
  wakeRotation?: (id: string) => Promise<void>;
  /** The dashboard at / and its cookie sessions (default on); how long a session lasts (default 8 h). */
  dashboard?: { enabled?: boolean; sessionTtlMs?: number };
}

/** Whether a route's body schema accepts no body (Fastify validates an absent body as null). */
function bodyMayBeAbsent(schema: unknown): boolean {
  if (schema === undefined) return true;
  const type = (schema as { type?: unknown }).type;
  return type === 'null' || (Array.isArray(type) && type.includes('null'));
}

/** The HTTP surface, built from its dependencies so tests can `inject()` without a port. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const metrics = deps.metrics ?? new Metrics({ defaultMetrics: false });
  const app = Fastify({
    // Request logs leave out the SSO callback's query (oidc.ts logRequest).
    ...(deps.logger ? { loggerInstance: deps.logger.child({}, { serializers: { req: logRequest } }) as FastifyBaseLogger } : { logger: false }),
    trustProxy: trustProxyOption(deps.trustProxy ?? false),
    bodyLimit: deps.bodyLimit ?? 16 * 1024,
    requestIdHeader: false,
    genReqId: () => crypto.randomUUID(),
    frameworkErrors,
    clientErrorHandler,
    ajv: {
      // Reject unknown fields instead of silently dropping them; coerce query strings only.
      customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // JSON only: a text/plain body is refused with 415 rather than validated as a string.
  app.removeContentTypeParser('text/plain');
  // An empty JSON body is no body where the route's body may be absent (the actions: clients send
  // `Content-Type: application/json` with nothing, or `{}`, or no body at all); where a body is
  // required it stays a 400 invalid_json.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = body.toString();
    if (text === '' && bodyMayBeAbsent(req.routeOptions.schema?.body)) return done(null, undefined);
    parseJson(req, text, done);
  });
  await app.register(errorsPlugin);
  // Security headers (helmet's defaults). No upgrade-insecure-requests: TLS is the deployment's
  // choice, and the demo's /docs is plain HTTP. Built once: @fastify/helmet 13 builds helmet's
  // middleware again on every request (about 3% of a list request, more of a small one).
  const secureHeaders = helmet({ contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } } });
  app.addHook('onRequest', (request, reply, done) => secureHeaders(request.raw, reply.raw, (err?: unknown) => done(err as Error | undefined)));
  if (deps.corsOrigins?.length) {
    await app.register(cors, { origin: [...deps.corsOrigins], methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'], allowedHeaders: ['authorization', 'content-type', 'idempotency-key', 'last-event-id'], maxAge: 600 });
  }
  // Hook order matters: per-address limit, then authentication, then per-principal limit.
  await app.register(rateLimitPlugin, deps.rateLimit ?? { max: 300, windowMs: 60_000 });
  const now = deps.now ?? Date.now;
  const dashboardOn = deps.dashboard?.enabled ?? true;
  const sessions = dashboardOn ? { store: new SessionStore(deps.redis, deps.repo.keys.session), now } : undefined;
  const sessionStreams = new SessionStreams();
  const authOptions = { tokens: deps.tokens, oidc: deps.oidc, sessions };
  await app.register(authPlugin, authOptions);
  app.addHook('onRequest', (req, reply) => app.limitByPrincipal(req, reply));
  await app.register(auditPlugin, {
    audit: deps.audit,
    onError: () => metrics.auditErrors.inc(),
    onUnauthenticated: (action, status) => metrics.unauthenticated.inc({ action, status: String(status) }),
  });
  if (deps.replicate) await app.register(replicationPlugin, { replicate: deps.replicate });
  app.addHook('onSend', async (req, reply, payload) => {
    reply.header('x-request-id', req.id);
    return payload;
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
  });
  await app.register(docsPlugin, { version: deps.version ?? '0.1.0' });

  const probe = readinessProbe({ required: deps.readiness, advisory: deps.advisoryReadiness }, app.log);
  await app.register(healthRoutes, { probe, ...(deps.draining ? { draining: deps.draining } : {}) });
  await app.register(statusRoutes, { probe });
  if (deps.serveMetrics ?? true) await app.register(metricsRoutes, { metrics });
  await app.register(rotationRoutes, {
    repo: deps.repo,
    service: deps.service,
    subaccounts: deps.subaccounts,
    idempotency: new IdempotencyStore(deps.redis, (k) => deps.repo.keys.idempotency(k), deps.idempotencyTtlSeconds ?? 86_400),
  });
  await app.register(accountRoutes, { accounts: deps.accounts, now });
  await app.register(batchRoutes, {
    batches: deps.batches,
    idempotency: new IdempotencyStore(deps.redis, (k) => deps.repo.keys.idempotency(k), deps.idempotencyTtlSeconds ?? 86_400),
  });
  const fleetAdmin = new FleetAdmin({
    accounts: deps.accounts,
    credentials: deps.credentials,
    policies: deps.policies,
    manage: deps.manageNewSubaccounts ?? 'off',
    onFleetChange: deps.onFleetChange,
    warn: (message, err) => app.log.warn({ err: { message: err.message } }, message),
  });
  const fleetDeps = { accounts: deps.accounts, credentials: deps.credentials, policies: deps.policies, admin: fleetAdmin, now };
  await app.register(accountFleetRoutes, fleetDeps);
  await app.register(credentialRoutes, { ...fleetDeps, subaccounts: deps.subaccounts, fleetPage: (opts) => readFleetPage(deps.redis, deps.credentials, opts) });
  await app.register(policyRoutes, { policies: deps.policies, admin: fleetAdmin });
  await app.register(eventRoutes, {
    streamKey: deps.repo.keys.events,
    redis: deps.redis,
    connect: deps.connectRedis,
    heartbeatMs: deps.sse?.heartbeatMs ?? 15_000,
    maxClients: deps.sse?.maxClients ?? 200,
    sessionStreams,
  });
  await app.register(auditRoutes, { audit: deps.audit });
  if (deps.compliance) await app.register(complianceRoutes, { ...deps.compliance, now });
  if (deps.planner) await app.register(scheduleRoutes, { planner: deps.planner });
  if (deps.consumers) await app.register(consumerRoutes, { consumers: deps.consumers, credentials: deps.credentials, repo: deps.repo, service: deps.service, wakeRotation: deps.wakeRotation, now });
  if (sessions) {
    const oidcSignIn = deps.oidcSignIn ? createOidcSignIn(deps.oidcSignIn, { redis: deps.redis, key: deps.repo.keys.session }) : undefined;
    await app.register(sessionRoutes, { auth: authOptions, store: sessions.store, streams: sessionStreams, ttlMs: deps.dashboard?.sessionTtlMs ?? 8 * 3_600_000, now, oidcSignIn });
    await app.register(dashboardRoutes);
  }
  return app;
}

/**
 * Fastify 5 takes a numeric trustProxy as "trust nothing" (a hop count cannot tell a proxy from a
 * client that reached the port directly), so a hop count becomes proxy-addr's hop rule here: the
 * nearest `hops` addresses are proxies. Safe only where the port is reachable through the proxies
 * alone; addresses and CIDRs are safe everywhere (README, TRUST_PROXY).
 */
function trustProxyOption(trust: false | number | string[]): false | string[] | ((address: string, hop: number) => boolean) {
  if (typeof trust !== 'number') return trust;
  return (_address, hop) => hop < trust;
}
