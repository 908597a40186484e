import type { SingleBar } from 'cli-progress';
import { isTerminal, type RotationStatus } from '../../domain/rotation.ts';
import { STOPPED, type BatchStatus } from '../../domain/batch.ts';
import type { ApiClient } from './client.ts';
import { EventStream } from './events.ts';
import type { Output } from './output.ts';

interface HistoryEntry {
  step: string;
  status: string;
  at: string;
  detail?: string;
}

/** GET /v1/rotations/{id}, as far as following needs it. */
export interface RotationView {
  id: string;
  accountSid: string;
  credential: string;
  status: RotationStatus;
  step: string;
  newKeySid: string | null;
  oldKeySid: string | null;
  dryRun: boolean;
  history: HistoryEntry[];
  error?: { code: string; message: string };
}

interface RotationEvent {
  type: 'rotation';
  id: string;
  status: RotationStatus;
  step: string;
  at: string;
  transition?: HistoryEntry;
}

const entryKey = (e: HistoryEntry): string => `${e.step}|${e.status}|${e.at}`;

export function stepLine(e: HistoryEntry): string {
  return `${e.at.slice(11, 23)}  ${e.step.padEnd(16)} ${e.status.padEnd(9)} ${e.detail ?? ''}`.trimEnd();
}

/**
 * Follow one rotation live until it ends: every step transition as it happens (one line each, or
 * the API's event JSON, one per line, with --json), then a summary. `start` starts the rotation
 * once the stream is connected, so not even its first step can be missed; without it the rotation
 * exists already and its history so far is printed first. Returns the final record.
 */
export async function followRotation(
  client: ApiClient,
  out: Output,
  signal: AbortSignal,
  target: { start: () => Promise<string> } | { id: string },
): Promise<RotationView> {
  const stream = new EventStream(client, signal);
  await stream.open();
  try {
    const seen = new Set<string>();
    let id: string;
    if ('start' in target) id = await target.start();
    else {
      id = target.id;
      const rec = await client.json<RotationView>(`/v1/rotations/${id}`);
      for (const e of rec.history) {
        seen.add(entryKey(e));
        if (!out.json) out.line(stepLine(e));
      }
      if (isTerminal(rec.status)) return rec;
    }
    for await (const ev of stream.events()) {
      if (ev.event === 'resync' || ev.event === 'expired') {
        // Events were trimmed, or the token ran out (the stream then reopens, or says why not): read the record itself.
        const rec = await client.json<RotationView>(`/v1/rotations/${id}`);
        for (const e of rec.history) if (!seen.has(entryKey(e)) && (seen.add(entryKey(e)), !out.json)) out.line(stepLine(e));
        if (isTerminal(rec.status)) return rec;
        continue;
      }
      if (ev.event !== 'rotation') continue;
      const data = JSON.parse(ev.data) as RotationEvent;
      if (data.id !== id) continue;
      if (out.json) out.line(ev.data);
      else if (data.transition && !seen.has(entryKey(data.transition))) {
        seen.add(entryKey(data.transition));
        out.line(stepLine(data.transition));
      }
      if (isTerminal(data.status)) break;
    }
    return await client.json<RotationView>(`/v1/rotations/${id}`);
  } finally {
    stream.close();
  }
}

/** GET /v1/batches/{id}, as far as following needs it. */
export interface BatchView {
  id: string;
  status: BatchStatus;
  total: number;
  counts: { started: number; succeeded: number; failed: number; cancelled: number; skipped: number; inFlight: number };
  currentWave: number;
  progress: Array<{ wave: number; size: number; started: number; succeeded: number; failed: number; cancelled: number; skipped: number; inFlight: number }>;
  halt: { wave: number; reason: string } | null;
  finishedAt: string | null;
}

const done = (w: BatchView['progress'][number]): number => w.succeeded + w.failed + w.cancelled + w.skipped;
export const batchSettled = (b: BatchView): boolean => STOPPED.has(b.status) && b.finishedAt !== null;

/**
 * Follow a batch until it has stopped with nothing in flight. On a terminal, one progress bar per
 * wave (cli-progress, on stderr), redrawn from GET /v1/batches/{id} whenever a batch or rotation
 * event arrives; elsewhere (a pipe, a CI log) one line per batch event. With --json, the API's
 * batch events, one per line. Returns the final batch.
 */
export async function followBatch(client: ApiClient, out: Output, signal: AbortSignal, target: { start: () => Promise<string> } | { id: string }): Promise<BatchView> {
  const stream = new EventStream(client, signal);
  await stream.open();
  let id: string;
  try {
    // Started only once the stream is connected, so its first events cannot be missed.
    id = 'start' in target ? await target.start() : target.id;
  } catch (err) {
    stream.close();
    throw err;
  }
  const { MultiBar, Presets } = await import('cli-progress');
  const bars = !out.json && out.errIsTTY ? new MultiBar({ format: ' wave {wave} [{bar}] {value}/{total} ok {ok} failed {failed} in flight {inFlight}', hideCursor: true, clearOnComplete: false, stream: process.stderr }, Presets.shades_classic) : undefined;
  const waveBars: SingleBar[] = [];
  const draw = (b: BatchView): void => {
    if (!bars) return;
    for (const w of b.progress) {
      const payload = { wave: String(w.wave).padStart(2), ok: w.succeeded, failed: w.failed, inFlight: w.inFlight };
      const bar = waveBars[w.wave - 1];
      if (bar) bar.update(done(w), payload);
      else waveBars[w.wave - 1] = bars.create(Math.max(w.size, 1), done(w), payload);
    }
  };
  try {
    let batch = await client.json<BatchView>(`/v1/batches/${id}`);
    draw(batch);
    if (!bars && !out.json) out.line(`batch ${id}: ${batch.status}, ${batch.total} credentials in ${batch.progress.length} waves`);
    if (batchSettled(batch)) return batch;
    // Rotation events come by the hundred in a big batch: one refresh at a time, the next one
    // asked for only when something arrived while it ran.
    let refreshing: Promise<void> | undefined;
    let again = false;
    const refresh = (): Promise<void> => {
      if (refreshing) {
        again = true;
        return refreshing;
      }
      refreshing = (async () => {
        do {
          again = false;
          batch = await client.json<BatchView>(`/v1/batches/${id}`);
          draw(batch);
        } while (again);
      })().finally(() => (refreshing = undefined));
      return refreshing;
    };
    for await (const ev of stream.events()) {
      if (ev.event === 'batch') {
        const data = JSON.parse(ev.data) as { id: string; event: string; wave?: number; detail: string; status: string };
        if (data.id !== id) continue;
        if (out.json) out.line(ev.data);
        else if (bars) bars.log(`${data.event}${data.wave !== undefined ? ` (wave ${data.wave + 1})` : ''}: ${data.detail}\n`);
        else out.line(`${data.event}${data.wave !== undefined ? ` (wave ${data.wave + 1})` : ''}: ${data.detail}`);
        await refresh();
      } else if (ev.event === 'rotation' && bars) {
        const data = JSON.parse(ev.data) as RotationEvent;
        if (isTerminal(data.status)) void refresh().catch(() => undefined);
        continue;
      } else if (ev.event === 'resync' || ev.event === 'expired') {
        await refresh();
      } else continue;
      if (batchSettled(batch)) break;
    }
    await refreshing;
    return batch;
  } finally {
    bars?.stop();
    stream.close();
  }
}
