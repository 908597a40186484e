import { Queue, UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import type { NotifyConfig } from '../src/config.ts';
import { deliveryJobId, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signWebhook, slackPayload, webhookBody, type Notification, type NotifySink } from '../src/domain/notification.ts';

/**
 * BullMQ plumbing of notifications: one job per (event, sink), its id derived from the event's
 * stable id so the same event enqueued twice is delivered once; retries with exponential backoff;
 * a receiver's 4xx (but 408 and 429) is final. Job data is the notification only: the URLs
 * (Slack's is itself a credential) and the signing secret stay in this process's configuration.
 */
export const NOTIFY_QUEUE = 'notify';

export interface NotifyJobData {
  sink: NotifySink;
  notification: Notification;
}

/** How long a delivered (or given-up) job is kept: while it exists, the same event is not enqueued again. */
const KEEP_SECONDS = 7 * 86_400;

export function createNotifyQueue(connection: ConnectionOptions, prefix: string): Queue<NotifyJobData> {
  const q = new Queue<NotifyJobData>(NOTIFY_QUEUE, { connection, prefix: `${prefix}:bull` });
  q.on('error', () => undefined);
  return q;
}

/** The sinks configured in this deployment, for the event types NOTIFY_EVENTS lets through. */
export function sinksFor(cfg: NotifyConfig, n: Notification): NotifySink[] {
  if (!cfg.events.includes(n.type)) return [];
  return [...(cfg.slackUrl ? (['slack'] as const) : []), ...(cfg.webhook ? (['webhook'] as const) : [])];
}

/** Enqueue one delivery per configured sink; an event already enqueued (same id) adds nothing. */
export async function enqueueNotification(queue: Queue<NotifyJobData>, cfg: NotifyConfig, n: Notification): Promise<number> {
  const sinks = sinksFor(cfg, n);
  for (const sink of sinks) {
    await queue.add(sink, { sink, notification: n }, {
      jobId: deliveryJobId(sink, n.id),
      attempts: cfg.maxAttempts,
      backoff: { type: 'exponential', delay: cfg.backoffMs },
      removeOnComplete: { age: KEEP_SECONDS },
      removeOnFail: { age: KEEP_SECONDS },
    });
  }
  return sinks.length;
}

export interface NotifyCounters {
  /** rotator_notifications_total{sink, outcome=sent|retried|failed}. */
  notifications: Counter<'sink' | 'outcome'>;
}

export interface NotifyWorker {
  worker: Worker<NotifyJobData>;
  close(): Promise<void>;
}

export function startNotifyWorker(opts: { connection: ConnectionOptions; prefix: string; cfg: NotifyConfig; log: Logger; metrics: NotifyCounters; fetch?: typeof fetch }): NotifyWorker {
  const doFetch = opts.fetch ?? fetch;
  const worker = new Worker<NotifyJobData>(
    NOTIFY_QUEUE,
    async (job: Job<NotifyJobData>) => {
      const { sink, notification } = job.data;
      const req = buildRequest(opts.cfg, sink, notification);
      if (!req) throw new UnrecoverableError(`the ${sink} sink is no longer configured`);
      let res: Response;
      try {
        res = await doFetch(req.url, { method: 'POST', headers: req.headers, body: req.body, signal: AbortSignal.timeout(opts.cfg.timeoutMs), redirect: 'error' });
      } catch (err) {
        // The URL is a credential (Slack's): only the cause's name and code go in the message.
        const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
        throw new Error(`${sink} receiver did not answer (${cause})`);
      }
      await res.body?.cancel().catch(() => undefined);
      if (res.ok) return res.status;
      const permanent = res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429;
      if (permanent) throw new UnrecoverableError(`${sink} receiver refused the notification with HTTP ${res.status}`);
      throw new Error(`${sink} receiver answered HTTP ${res.status}`);
    },
    { connection: opts.connection, prefix: `${opts.prefix}:bull`, concurrency: 4 },
  );
  worker.on('error', (err) => opts.log.error({ err: { message: err.message } }, 'notify worker error'));
  worker.on('completed', (job) => {
    opts.metrics.notifications.inc({ sink: job.data.sink, outcome: 'sent' });
    opts.log.info({ notification: job.data.notification.id, sink: job.data.sink, attempts: job.attemptsMade + 1 }, 'notification delivered');
  });
  worker.on('failed', (job, err) => {
    if (!job) return;
    const final = err instanceof UnrecoverableError || err.name === 'UnrecoverableError' || job.attemptsMade >= (job.opts.attempts ?? 1);
    opts.metrics.notifications.inc({ sink: job.data.sink, outcome: final ? 'failed' : 'retried' });
    const fields = { notification: job.data.notification.id, sink: job.data.sink, attempts: job.attemptsMade, err: { message: err.message } };
    if (final) opts.log.error(fields, 'notification not delivered: gave up');
    else opts.log.warn(fields, 'notification delivery failed; retrying with backoff');
  });
  return { worker, close: () => worker.close() };
}

function buildRequest(cfg: NotifyConfig, sink: NotifySink, n: Notification): { url: string; headers: Record<string, string>; body: string } | undefined {
  if (sink === 'slack') {
    if (!cfg.slackUrl) return undefined;
    return { url: cfg.slackUrl.reveal(), headers: { 'content-type': 'application/json' }, body: JSON.stringify(slackPayload(n)) };
  }
  if (!cfg.webhook) return undefined;
  const body = webhookBody(n);
  // Signed at each attempt: a retry an hour later still falls within the receiver's tolerance.
  const signature = signWebhook(cfg.webhook.secret.reveal(), body, Math.floor(Date.now() / 1000));
  return {
    url: cfg.webhook.url,
    headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: signature, [IDEMPOTENCY_HEADER]: n.id, 'rotator-event': n.type, 'user-agent': 'rotator-notify/1' },
    body,
  };
}
