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

/**
 * The chaos run's Redis, whatever its topology: the environment Rotator gets, a client for the
 * run's own reads that waits through the fault, the one Redis fault the run inflicts, and what the
 * leak scans read.
 */
export interface ChaosRedisWorld {
  env: Record<string, string>;
  connect(): Redis;
  /** Inflict the Redis fault, wait `restartAfterMs`, recover; resolves to a line for the run's log. */
  fault(restartAfterMs: number, sleep: (ms: number) => Promise<void>): Promise<string>;
  /** The servers holding the data now (the live leak scan; the end check pings the first). */
  liveUrls(): string[];
  persistedText(): string;
  details(): Record<string, unknown>;
  /** Sentinel: whether the former primary now replicates the promoted one (the topology healed). */
  rejoined?(): Promise<boolean>;
  stop(): Promise<void>;
}

/** One redis-server, SIGKILLed and started again on its AOF. */
export async function singleChaosRedis(dir: string): Promise<ChaosRedisWorld> {
  const r = await ChaosRedis.start(dir);
  return {
    env: { REDIS_URL: r.url },
    connect: () => new Redis(r.url, { maxRetriesPerRequest: null, retryStrategy: () => 100 }),
    fault: async (restartAfterMs, sleep) => {
      await r.kill();
      await sleep(restartAfterMs);
      await r.restart();
      return 'redis-server back on its AOF';
    },
    liveUrls: () => [r.url],
    persistedText: () => r.persistedText(),
    details: () => ({}),
    stop: () => r.stop(),
  };
}

/**
 * A primary and a replica under three Sentinels (test/helpers/redis-topologies.ts): the fault
 * SIGKILLs the primary, the Sentinels promote the replica (the run waits for `+switch-master`),
 * and the former primary is started again and rejoins as the new primary's replica.
 */
export async function sentinelChaosRedis(dir: string): Promise<ChaosRedisWorld> {
  const { TestSentinelSet } = await import('../helpers/redis-topologies.ts');
  const set = await TestSentinelSet.start(dir);
  const failovers: number[] = [];
  return {
    env: set.env,
    connect: () =>
      new Redis({
        sentinels: set.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })),
        name: set.env.REDIS_SENTINEL_NAME!,
        maxRetriesPerRequest: null,
        retryStrategy: () => 100,
      }),
    fault: async (restartAfterMs, sleep) => {
      const f = await set.failover();
      failovers.push(f.ms);
      await sleep(restartAfterMs);
      await set.restartFormerPrimary(f.formerPort);
      return `Sentinel promoted ${f.newPrimary} ${f.ms} ms after the SIGKILL; the former primary is running again`;
    },
    liveUrls: () => [set.primary.url],
    persistedText: () => set.persistedText(),
    details: () => ({ failoverMs: failovers }),
    rejoined: () => set.rejoined(),
    stop: () => set.stop(),
  };
}
