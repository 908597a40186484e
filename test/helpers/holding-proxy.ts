import { createServer, request, type IncomingMessage, type Server } from 'node:http';

/**
 * An HTTP proxy in front of the Twilio emulator (TWILIO_BASE_URL points at it) that can hold one
 * request until the test releases it: a worker in another process is then, for certain, in the
 * middle of the step that sent it, for as long as the test needs (to start another worker, to
 * SIGTERM this one) — or refuse some requests with 503 for as long as the test needs a rotation
 * not to progress. Everything else passes straight through.
 */
export class HoldingProxy {
  readonly #server: Server;
  readonly #target: URL;
  readonly #rules: Array<{ match: (method: string, path: string) => boolean | Promise<boolean>; armed: boolean; onHeld: () => void; released: Promise<void> }> = [];
  url = '';

  private constructor(target: string) {
    this.#target = new URL(target);
    this.#server = createServer((req, res) => {
      void this.#handle(req).then(
        (upstream) => {
          res.writeHead(upstream.statusCode ?? 502, upstream.headers);
          if ('body' in upstream) res.end(upstream.body);
          else upstream.pipe(res);
        },
        (err: Error) => {
          res.writeHead(502, { 'content-type': 'text/plain' });
          res.end(`proxy: ${err.message}`);
        },
      );
    });
  }

  static async start(target: string): Promise<HoldingProxy> {
    const p = new HoldingProxy(target);
    await new Promise<void>((resolve) => p.#server.listen(0, '127.0.0.1', resolve));
    const a = p.#server.address();
    p.url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
    return p;
  }

  /**
   * Hold the first request `match` accepts (asked at the moment the request arrives): `held`
   * resolves once it is held; `release()` lets it through.
   */
  hold(match: (method: string, path: string) => boolean | Promise<boolean>): { held: Promise<void>; release: () => void } {
    let release!: () => void;
    let onHeld!: () => void;
    const held = new Promise<void>((r) => (onHeld = r));
    const released = new Promise<void>((r) => (release = r));
    this.#rules.push({ match, armed: true, onHeld, released });
    return { held, release };
  }

  /**
   * Answer the requests `match` accepts with Twilio's 503 (a transient error: the rotation retries
   * with backoff, holding no worker) until `allow()`; returns how many were refused.
   */
  refuse(match: (method: string, path: string) => boolean | Promise<boolean>): { allow: () => void; refused: () => number } {
    const rule = { match, on: true, count: 0 };
    this.#refusals.push(rule);
    return { allow: () => void (rule.on = false), refused: () => rule.count };
  }

  readonly #refusals: Array<{ match: (method: string, path: string) => boolean | Promise<boolean>; on: boolean; count: number }> = [];

  async #handle(req: IncomingMessage): Promise<IncomingMessage | { statusCode: number; headers: Record<string, string>; body: string }> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0]!;
    for (const rule of this.#refusals) {
      if (rule.on && (await rule.match(method, path)) && rule.on) {
        rule.count++;
        return { statusCode: 503, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: 20503, message: 'Service unavailable (refused by the test proxy)', more_info: '', status: 503 }) };
      }
    }
    for (const rule of this.#rules) {
      if (!rule.armed || !(await rule.match(method, path)) || !rule.armed) continue;
      rule.armed = false;
      rule.onHeld();
      await rule.released;
      break;
    }
    return new Promise((resolve, reject) => {
      const up = request({ host: this.#target.hostname, port: this.#target.port, method, path: req.url, headers: { ...req.headers, host: this.#target.host } }, resolve);
      up.on('error', reject);
      up.end(Buffer.concat(chunks));
    });
  }

  async close(): Promise<void> {
    for (const r of this.#rules) r.armed = false;
    for (const r of this.#refusals) r.on = false;
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
