import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/**
 * The chaos run's own redis-server: AOF on with `appendfsync always` (so an acknowledged write
 * survives a SIGKILL), on a fixed port and directory so it can be killed and started again in
 * place — the one Redis restart the run inflicts.
 */
export class ChaosRedis {
  readonly url: string;
  #child: ChildProcess | undefined;
  #stopped = false;

  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {
    this.url = `redis://127.0.0.1:${port}`;
  }

  static async start(dir: string): Promise<ChaosRedis> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const r = new ChaosRedis(await freePort(), dir);
    await r.#spawn();
    return r;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  async #spawn(): Promise<void> {
    if (this.#stopped) return;
    const args = [
      '--port', String(this.port),
      '--bind', '127.0.0.1',
      '--dir', this.dir,
      '--appendonly', 'yes',
      '--appendfsync', 'always',
      '--save', '',
      '--maxmemory-policy', 'noeviction',
      '--logfile', join(this.dir, 'redis.log'),
    ];
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    this.#child = child;
    const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
    probe.on('error', () => undefined);
    const deadline = Date.now() + 15_000;
    try {
      for (;;) {
        if (child.exitCode !== null) throw new Error(`chaos redis-server exited (${child.exitCode}); see ${join(this.dir, 'redis.log')}`);
        try {
          await probe.connect();
          // LOADING while the AOF is replayed: wait until it answers for real.
          if ((await probe.ping()) === 'PONG') return;
        } catch {
          probe.disconnect();
        }
        if (Date.now() > deadline) throw new Error(`chaos redis-server did not answer on port ${this.port}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      probe.disconnect();
    }
  }

  /** SIGKILL, as a machine losing power would; nothing is flushed beyond what AOF already has. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  /** Start again on the same port and directory: the AOF is replayed. */
  async restart(): Promise<void> {
    await this.kill();
    await this.#spawn();
  }

  /** Every byte Redis has persisted (the AOF files), for the leak scan: a secret written and deleted is still found. */
  persistedText(): string {
    const out: string[] = [];
    const walk = (d: string): void => {
      for (const name of readdirSync(d)) {
        const p = join(d, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (!name.endsWith('.log')) out.push(readFileSync(p).toString('latin1'));
      }
    };
    walk(this.dir);
    return out.join('\n');
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(t);
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}
