import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { HistoryEntry, RotationStatus } from './rotation.ts';

/**
 * Notifications (issue 18): what is worth waking someone for, and the exact bytes each sink gets.
 * Pure: no I/O. A notification carries ids, SIDs, names and short texts only — never a secret —
 * and a stable `id`, so the same event noticed twice (a relay re-reading after a crash, two
 * processes watching) is delivered once.
 */

export const NOTIFY_EVENTS = ['rotation.failed', 'rotation.held', 'batch.halted', 'credential.overdue', 'planner.stalled'] as const;
export type NotifyEventType = (typeof NOTIFY_EVENTS)[number];

export const NOTIFY_SINKS = ['slack', 'webhook'] as const;
export type NotifySink = (typeof NOTIFY_SINKS)[number];

export interface Notification {
  /** Stable per event: the idempotency key receivers de-duplicate by. */
  id: string;
  type: NotifyEventType;
  /** When the event happened (ISO 8601). */
  at: string;
  /** One line for a human. */
  summary: string;
  accountSid?: string;
  credential?: string;
  rotationId?: string;
  batchId?: string;
  step?: string;
  detail?: string;
}

/** What a rotation transition event in the events stream says (state/rotations.ts RotationEvent, narrowed). */
export interface RotationTransitionEvent {
  id: string;
  accountSid: string;
  credential?: string;
  status: RotationStatus;
  transition?: HistoryEntry;
}

/**
 * A rotation waits for two reasons: the drain (every rotation does; nobody needs telling) and a
 * promote gate — consumers still report the old key — which lasts until someone looks. Only the
 * second is a hold worth a notification.
 */
export function isOperatorHold(entry: HistoryEntry): boolean {
  return entry.status === 'waiting' && entry.step === 'promote' && !(entry.detail ?? '').startsWith('drain');
}

/** The notification a rotation transition raises, if any: a terminal failure, or a hold. */
export function rotationNotification(e: RotationTransitionEvent): Notification | undefined {
  const t = e.transition;
  if (!t) return undefined;
  const credential = e.credential ?? 'default';
  const base = { at: t.at, accountSid: e.accountSid, credential, rotationId: e.id, step: t.step, ...(t.detail ? { detail: t.detail } : {}) };
  if (e.status === 'failed' && t.status === 'finished') {
    return { ...base, id: `rotation.failed/${e.id}/${Date.parse(t.at)}`, type: 'rotation.failed', summary: `Rotation ${e.id} of ${e.accountSid}/${credential} failed at ${t.step}${t.detail ? `: ${t.detail}` : ''}` };
  }
  if (isOperatorHold(t)) {
    // A gate's wait is re-armed every few seconds, each time a new transition: one notification per rotation.
    return { ...base, id: `rotation.held/${e.id}`, type: 'rotation.held', summary: `Rotation ${e.id} of ${e.accountSid}/${credential} is held at promote${t.detail ? `: ${t.detail}` : ''}` };
  }
  return undefined;
}

export function batchHaltedNotification(e: { id: string; at: string; detail: string }): Notification {
  return { id: `batch.halted/${e.id}/${Date.parse(e.at)}`, type: 'batch.halted', at: e.at, batchId: e.id, detail: e.detail, summary: `Batch ${e.id} halted: ${e.detail}` };
}

/** A credential whose deadline passed at `deadlineMs`: one notification per deadline. */
export function overdueNotification(credentialId: string, deadlineMs: number): Notification {
  const slash = credentialId.indexOf('/');
  const accountSid = slash > 0 ? credentialId.slice(0, slash) : credentialId;
  const credential = slash > 0 ? credentialId.slice(slash + 1) : 'default';
  const at = new Date(deadlineMs).toISOString();
  return { id: `credential.overdue/${credentialId}/${deadlineMs}`, type: 'credential.overdue', at, accountSid, credential, summary: `Credential ${accountSid}/${credential} is overdue: its policy's deadline ${at} passed without a rotation` };
}

/** The planner has not ticked since `lastTickMs` (null: never): one notification per silence. */
export function plannerStalledNotification(lastTickMs: number | null, nowMs: number): Notification {
  const since = lastTickMs === null ? 'never ticked' : `last ticked at ${new Date(lastTickMs).toISOString()}`;
  return { id: `planner.stalled/${lastTickMs ?? 'never'}`, type: 'planner.stalled', at: new Date(nowMs).toISOString(), summary: `The rotation planner is not ticking (${since}): scheduled rotations are not starting` };
}

/**
 * A BullMQ job id for (sink, event): job ids may not contain `:`, and an event id does (ISO
 * times) or may be long, so it is hashed. Adding a job whose id exists is a no-op in BullMQ:
 * this is the de-duplication.
 */
export function deliveryJobId(sink: NotifySink, notificationId: string): string {
  return `${sink}-${createHash('sha256').update(notificationId).digest('hex').slice(0, 40)}`;
}

// ---------------------------------------------------------------------------------------------
// Sinks' bodies

/** Slack's mrkdwn treats `&`, `<` and `>` as markup (`<!channel>` pings everyone): escaped. */
function slackEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const SLACK_TITLES: Record<NotifyEventType, string> = {
  'rotation.failed': ':x: Rotation failed',
  'rotation.held': ':pause_button: Rotation held',
  'batch.halted': ':octagonal_sign: Batch halted',
  'credential.overdue': ':hourglass: Credential overdue',
  'planner.stalled': ':warning: Planner not ticking',
};

/**
 * A Slack incoming webhook's body: `text` (shown in notifications, and the whole message where
 * blocks are not rendered) plus Block Kit blocks — a section with the summary and a context line
 * with the ids. Section text is capped at 3,000 characters by Slack.
 */
export function slackPayload(n: Notification): { text: string; blocks: unknown[] } {
  const title = SLACK_TITLES[n.type];
  const text = `${title}: ${slackEscape(n.summary)}`.slice(0, 2_900);
  const ids = [n.accountSid && `account \`${n.accountSid}\``, n.credential && `credential \`${slackEscape(n.credential)}\``, n.rotationId && `rotation \`${n.rotationId}\``, n.batchId && `batch \`${n.batchId}\``, `at ${n.at}`].filter(Boolean).join(' · ');
  return {
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `*${title}*\n${slackEscape(n.summary)}`.slice(0, 2_900) } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: ids }] },
    ],
  };
}

/** The generic webhook's JSON body: the notification itself, with a version for receivers to switch on. */
export function webhookBody(n: Notification): string {
  return JSON.stringify({ version: 1, ...n });
}

export const SIGNATURE_HEADER = 'rotator-signature';
export const IDEMPOTENCY_HEADER = 'idempotency-key';

/** `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the timestamp is signed with the body, so a replay later is refused by the receiver's tolerance. */
export function signWebhook(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

/**
 * The receiver's side (the README shows the same in a few lines): true only when a v1 signature
 * matches and the timestamp is within `toleranceSeconds` of `nowSeconds`.
 */
export function verifyWebhookSignature(secret: string, body: string, header: string | undefined, nowSeconds: number, toleranceSeconds = 300): boolean {
  if (!header) return false;
  const parts = header.split(',').map((p) => p.trim().split('='));
  const t = Number(parts.find(([k]) => k === 't')?.[1]);
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${t}.${body}`).digest('hex'));
  return parts.some(([k, v]) => k === 'v1' && v !== undefined && v.length === expected.length && timingSafeEqual(Buffer.from(v), expected));
}
