import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { SecretStore } from '../providers/secret-store.ts';
import { STATUSES, type HistoryEntry, type RotationRecord, type RotationStatus } from './domain/rotation.ts';
import type { TwilioCallObserver } from './twilio/http.ts';

/**
 * Prometheus metrics on a registry of their own (several runtimes may share a process in tests).
 * Labels are closed sets — statuses, steps, HTTP methods and codes, route templates, store
 * operations — never an id, a SID, a URL with parameters, a token or a secret.
 */
export interface MetricsSources {
  /** Rotations per status, read from Redis at scrape time (true across every process). */
  rotationCounts?: () => Promise<Record<RotationStatus, number>>;
  /** BullMQ job counts per state. */
  queueCounts?: () => Promise<Record<string, number>>;
  /** The planner's counts and last tick, read from Redis at scrape time (true across every process). */
  plannerState?: () => Promise<PlannerGauges>;
}

export interface PlannerGauges {
  scheduled: number;
  due: number;
  overdue: number;
  inFlight: number;
  failing: number;
  paused: boolean;
  /** Epoch ms of the last tick in any process; null before the first. */
  lastTickMs: number | null;
}

/** What a tick reports to the metrics (state/schedule.ts TickReport, without importing it). */
export interface PlannerTickCounts {
  durationMs: number;
  started: number;
  inFlight: number;
  skippedWindow: number;
  skippedPaused: number;
  notDue: number;
  lostClaim: number;
  blocked: number;
  deferred: number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly twilioRequests: Counter<'method' | 'status'>;
  readonly twilioErrors: Counter<'status' | 'code'>;
  readonly twilioDuration: Histogram<'method'>;
  readonly transitions: Counter<'step' | 'event'>;
  readonly stepDuration: Histogram<'step'>;
  readonly storeErrors: Counter<'operation' | 'code'>;
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route'>;
  readonly auditErrors: Counter;
  readonly keySprawl: Counter;
  readonly unauthenticated: Counter<'action' | 'status'>;
  readonly plannerTicks: Counter;
  readonly plannerTickDuration: Histogram;
  readonly plannerStarted: Counter;
  readonly plannerSkipped: Counter<'reason'>;
  readonly notifications: Counter<'sink' | 'outcome'>;
  readonly auditTrimmed: Counter;
  #sources: MetricsSources = {};

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.twilioRequests = new Counter({ name: 'rotator_twilio_requests_total', help: 'HTTP requests to Twilio, by method and status (0: no answer)', labelNames: ['method', 'status'], registers });
    this.twilioErrors = new Counter({ name: 'rotator_twilio_errors_total', help: 'Twilio requests that failed, by HTTP status and Twilio error code', labelNames: ['status', 'code'], registers });
    this.twilioDuration = new Histogram({ name: 'rotator_twilio_request_seconds', help: 'Twilio request latency', labelNames: ['method'], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers });
    this.transitions = new Counter({ name: 'rotator_rotation_transitions_total', help: 'Rotation history events recorded by workers in this process', labelNames: ['step', 'event'], registers });
    this.stepDuration = new Histogram({
      name: 'rotator_step_duration_seconds',
      help: 'Time from a step starting to completing (from rotation history), by step',
      labelNames: ['step'],
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
      registers,
    });
    this.storeErrors = new Counter({ name: 'rotator_store_errors_total', help: 'Secret store operations that failed, by operation and error code', labelNames: ['operation', 'code'], registers });
    this.httpRequests = new Counter({ name: 'rotator_http_requests_total', help: 'API requests by method, route template and status', labelNames: ['method', 'route', 'status'], registers });
    this.httpDuration = new Histogram({ name: 'rotator_http_request_seconds', help: 'API latency by route template', labelNames: ['method', 'route'], buckets: [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1], registers });
    this.auditErrors = new Counter({ name: 'rotator_audit_append_errors_total', help: 'Audit entries that could not be appended', registers });
    this.keySprawl = new Counter({
      name: 'rotator_key_sprawl_found_total',
      help: "API keys with Rotator's prefix that Rotator did not create, found (and left in place) by create-secondary's orphan cleanup; counted per scan",
      registers,
    });
    this.unauthenticated = new Counter({
      name: 'rotator_api_unauthenticated_total',
      help: 'Requests to audited routes refused before any principal was known (no or bad credential): counted here, not appended to the audit chain',
      labelNames: ['action', 'status'],
      registers,
    });

    this.notifications = new Counter({
      name: 'rotator_notifications_total',
      help: 'Notification deliveries by this process, by sink (slack, webhook) and outcome: sent, retried (an attempt failed, another is scheduled with backoff), failed (gave up)',
      labelNames: ['sink', 'outcome'],
      registers,
    });
    this.auditTrimmed = new Counter({ name: 'rotator_audit_trimmed_entries_total', help: 'Audit entries exported and trimmed past AUDIT_RETENTION_DAYS by this process', registers });
    this.plannerTicks = new Counter({ name: 'rotator_planner_ticks_total', help: 'Planner ticks run by this process', registers });
    this.plannerTickDuration = new Histogram({ name: 'rotator_planner_tick_seconds', help: 'Duration of a planner tick in this process', buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers });
    this.plannerStarted = new Counter({ name: 'rotator_planner_started_total', help: 'Scheduled rotations started by planner ticks in this process', registers });
    this.plannerSkipped = new Counter({
      name: 'rotator_planner_skipped_total',
      help: 'Due credentials a tick did not start, by reason: window (outside it or in a blackout), paused, not_due (the due set was behind), lost_claim (another tick had it), blocked (a failed rotation holds it, or the start failed), in_flight, deferred (over the per-tick budget)',
      labelNames: ['reason'],
      registers,
    });

    const sources = (): MetricsSources => this.#sources;
    new Gauge({
      name: 'rotator_planner_credentials',
      help: 'Scheduled credentials by planner state (all processes; from Redis): scheduled, due, overdue, in_flight, failing',
      labelNames: ['state'],
      registers,
      async collect() {
        const s = await sources().plannerState?.();
        if (!s) return;
        this.set({ state: 'scheduled' }, s.scheduled);
        this.set({ state: 'due' }, s.due);
        this.set({ state: 'overdue' }, s.overdue);
        this.set({ state: 'in_flight' }, s.inFlight);
        this.set({ state: 'failing' }, s.failing);
      },
    });
    new Gauge({
      name: 'rotator_planner_last_tick_timestamp_seconds',
      help: 'When the planner last ticked in any process (0: never); alert when it is older than three PLANNER_TICK_SECONDS',
      registers,
      async collect() {
        const s = await sources().plannerState?.();
        if (s) this.set(s.lastTickMs === null ? 0 : s.lastTickMs / 1000);
      },
    });
    new Gauge({
      name: 'rotator_planner_paused',
      help: '1 while the fleet-wide pause stops scheduled rotations',
      registers,
      async collect() {
        const s = await sources().plannerState?.();
        if (s) this.set(s.paused ? 1 : 0);
      },
    });
    new Gauge({
      name: 'rotator_rotations',
      help: 'Rotations by status (all processes; from Redis)',
      labelNames: ['status'],
      registers,
      async collect() {
        const counts = await sources().rotationCounts?.();
        if (!counts) return;
        for (const s of STATUSES) this.set({ status: s }, counts[s] ?? 0);
      },
    });
    new Gauge({
      name: 'rotator_queue_jobs',
      help: 'Rotation jobs in the BullMQ queue, by state',
      labelNames: ['state'],
      registers,
      async collect() {
        const counts = await sources().queueCounts?.();
        if (!counts) return;
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
  }

  setSources(sources: MetricsSources): void {
    this.#sources = { ...this.#sources, ...sources };
  }

  /** A tick in this process. */
  observeTick(t: PlannerTickCounts): void {
    this.plannerTicks.inc();
    this.plannerTickDuration.observe(t.durationMs / 1000);
    if (t.started) this.plannerStarted.inc(t.started);
    const skipped: Array<[string, number]> = [
      ['window', t.skippedWindow],
      ['paused', t.skippedPaused],
      ['not_due', t.notDue],
      ['lost_claim', t.lostClaim],
      ['blocked', t.blocked],
      ['in_flight', t.inFlight],
      ['deferred', t.deferred],
    ];
    for (const [reason, n] of skipped) if (n) this.plannerSkipped.inc({ reason }, n);
  }

  /** TwilioAdmin's per-call observer. */
  readonly observeTwilio: TwilioCallObserver = (call) => {
    this.twilioRequests.inc({ method: call.method, status: String(call.status) });
    this.twilioDuration.observe({ method: call.method }, call.durationMs / 1000);
    if (call.status === 0 || call.status >= 400) this.twilioErrors.inc({ status: String(call.status), code: call.errorCode !== undefined ? String(call.errorCode) : 'none' });
  };

  /** The processor's onTransition: counts events; a completed step's duration comes from its history. */
  observeTransition(rec: RotationRecord, entry: HistoryEntry): void {
    this.transitions.inc({ step: entry.step, event: entry.status });
    if (entry.status !== 'completed') return;
    if (entry.startedAt) {
      const seconds = (Date.parse(entry.at) - Date.parse(entry.startedAt)) / 1000;
      if (Number.isFinite(seconds) && seconds >= 0) this.stepDuration.observe({ step: entry.step }, seconds);
      return;
    }
    for (let i = rec.history.length - 2; i >= 0; i--) {
      const h = rec.history[i]!;
      if (h.step === entry.step && h.status === 'started') {
        const seconds = (Date.parse(entry.at) - Date.parse(h.at)) / 1000;
        if (Number.isFinite(seconds) && seconds >= 0) this.stepDuration.observe({ step: entry.step }, seconds);
        return;
      }
    }
  }

  /** The store with every failed operation counted by its error code (StoreError codes are a closed set). */
  instrumentStore(store: SecretStore): SecretStore {
    const errors = this.storeErrors;
    return new Proxy(store, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function' || typeof prop !== 'string') return value;
        // Bound to the store itself: providers keep state in private (#) fields, which a call
        // through the proxy as `this` cannot reach.
        if (prop === 'close') return (value as () => Promise<void>).bind(target);
        return async (...args: unknown[]) => {
          try {
            return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } catch (err) {
            const code = (err as { code?: unknown }).code;
            errors.inc({ operation: prop, code: typeof code === 'string' && /^[a-z_]{1,40}$/.test(code) ? code : 'unknown' });
            throw err;
          }
        };
      },
    });
  }
}
