import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { ApiClient } from './client.ts';
import { CliError, EXIT } from './exit-codes.ts';

/** One server-sent event of GET /v1/events: `rotation`, `batch`, `resync` or `expired`. */
export interface StreamEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/** How often in a row a dropped stream is reopened before the CLI gives up (exit 3). */
const MAX_RECONNECTS = 5;

/**
 * GET /v1/events, connected: the server has fixed where the stream starts (its newest entry) once
 * the response headers arrive, so whatever the caller does after `open()` resolves — start a
 * rotation, read a record — shows up on it. A dropped connection is reopened with Last-Event-ID,
 * which replays exactly what was missed (the API's contract), so no event is lost or doubled.
 */
export class EventStream {
  private lastId: string | undefined;
  private reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  private readonly queue: StreamEvent[] = [];
  private readonly decoder = new TextDecoder();
  private readonly parser = createParser({
    onEvent: (m: EventSourceMessage) => {
      if (m.id) this.lastId = m.id;
      this.queue.push({ id: m.id, event: m.event ?? 'message', data: m.data });
    },
  });

  constructor(
    private readonly client: ApiClient,
    private readonly signal: AbortSignal,
  ) {}

  async open(): Promise<void> {
    const res = await this.client.fetch('/v1/events', {
      headers: { accept: 'text/event-stream', ...(this.lastId ? { 'last-event-id': this.lastId } : {}) },
      timeoutMs: 0,
      signal: this.signal,
    });
    if (!res.body) throw new CliError(EXIT.apiError, 'the event stream answered without a body');
    this.reader = res.body.getReader();
  }

  /** The events in order, forever (until the caller stops iterating or the signal aborts). */
  async *events(): AsyncGenerator<StreamEvent> {
    let failures = 0;
    for (;;) {
      while (this.queue.length) yield this.queue.shift()!;
      let chunk: { done: boolean; value?: Uint8Array | undefined };
      try {
        chunk = await this.reader!.read();
      } catch (err) {
        if (this.signal.aborted) throw new CliError(EXIT.interrupted, 'interrupted');
        chunk = { done: true, value: undefined };
        void err;
      }
      if (!chunk.done) {
        failures = 0;
        this.parser.feed(this.decoder.decode(chunk.value!, { stream: true }));
        continue;
      }
      // The stream ended (the API restarted, a proxy cut it): reopen from the last id seen.
      this.parser.reset();
      for (;;) {
        if (this.signal.aborted) throw new CliError(EXIT.interrupted, 'interrupted');
        try {
          await this.open();
          break;
        } catch (err) {
          if (!(err instanceof CliError) || err.code !== EXIT.unreachable || ++failures >= MAX_RECONNECTS) throw err;
          await new Promise((r) => setTimeout(r, 500 * failures));
        }
      }
    }
  }

  close(): void {
    this.reader?.cancel().catch(() => undefined);
  }
}
