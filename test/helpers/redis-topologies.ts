import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { tlsOnlyConfig, type TestCertificates } from './tls-certs.ts';

/**
 * Real Redis topologies for tests, from the installed redis-server: a three-primary Redis Cluster,
 * and a primary with one replica watched by three Sentinels (`redis-server --sentinel`, what
 * Debian's redis-sentinel package runs). Every wait is for an event the servers report (a PING
 * answered, `cluster_state:ok`, the replica's link up, the Sentinels knowing one another,
 * `+switch-master`), never a guessed time.
 */

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Poll `fn` until truthy: the servers report these states only when asked. */
async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One redis-server (or Sentinel) process on 127.0.0.1:port. */
export class RedisProcess {
  readonly url: string;
  #child!: ChildProcess;
  exited!: Promise<void>;

  constructor(
    readonly port: number,
    readonly dir: string,
    private readonly args: string[],
    /** How the test's own clients reach it (TLS, an ACL user): what `ask()` and `failover()` use. */
    readonly client: RedisOptions = {},
  ) {
    this.url = `${client.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`;
    this.#spawn();
  }

  #spawn(): void {
    this.#child = spawn('redis-server', this.args, { stdio: 'ignore', cwd: this.dir });
    const child = this.#child;
    this.exited = new Promise((r) => child.once('exit', () => r()));
  }

  /** Start again, same port, directory and arguments (its AOF is replayed); resolves once it answers. */
  async restart(): Promise<void> {
    await this.kill();
    this.#spawn();
    await this.answering();
  }

  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** A short-lived client for one question. */
  async ask<T>(fn: (r: Redis) => Promise<T>): Promise<T> {
    const r = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, connectTimeout: 2_000, ...this.client });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return await fn(r);
    } finally {
      r.disconnect();
    }
  }

  async answering(): Promise<void> {
    await until(`redis-server on port ${this.port} to answer`, async () => {
      if (!this.running) throw new Error(`redis-server on port ${this.port} exited; see ${this.dir}/redis.log`);
      return (await this.ask((r) => r.ping())) === 'PONG';
    });
  }

  /** SIGKILL, as a machine losing power would. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.#child.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.#child.kill('SIGTERM');
    const t = setTimeout(() => this.#child.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(t);
  }
}

const dataArgs = (port: number, dir: string, persist: boolean, tls = false): string[] => [
  // With TLS the port is in the configuration file (tlsOnlyConfig): no plain-text port.
  ...(tls ? [] : ['--port', String(port)]),
  '--bind', '127.0.0.1',
  '--dir', dir,
  '--save', '',
  '--maxmemory-policy', 'noeviction',
  '--logfile', join(dir, 'redis.log'),
  ...(persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
];

/**
 * One redis-server serving TLS only (no plain-text port), with these certificates and ACL `users`
 * (`user …` lines; `default` is turned off when any are given); the test's own client connects
 * as `client`. Resolves once it answers.
 */
export async function startTlsRedis(dir: string, certs: TestCertificates, o: { users?: string[]; client?: RedisOptions } = {}): Promise<RedisProcess> {
  const port = await freePort();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const conf = join(dir, 'redis.conf');
  writeFileSync(conf, [...tlsOnlyConfig(port, certs), ...(o.users?.length ? ['user default off', ...o.users] : []), ''].join('\n'), { mode: 0o600 });
  const p = new RedisProcess(port, dir, [conf, ...dataArgs(port, dir, false, true)], { tls: { ca: readFileSync(certs.caFile) }, ...o.client });
  try {
    await p.answering();
  } catch (err) {
    await p.stop();
    throw err;
  }
  return p;
}

export interface TestRedisCluster {
  /** `127.0.0.1:port` of every primary: REDIS_CLUSTER_NODES. */
  nodes: string[];
  urls: string[];
  env: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * A Redis Cluster of `primaries` primaries (no replicas) in `dir`: each node started with
 * `--cluster-enabled yes`, joined with `redis-cli --cluster create … --cluster-yes`, ready once
 * every node reports `cluster_state:ok` with all 16,384 slots assigned.
 */
export async function startRedisCluster(dir: string, primaries = 3): Promise<TestRedisCluster> {
  const procs: RedisProcess[] = [];
  try {
    for (let i = 0; i < primaries; i++) {
      const port = await freePort();
      const d = join(dir, `cluster-${port}`);
      mkdirSync(d, { recursive: true, mode: 0o700 });
      procs.push(new RedisProcess(port, d, [...dataArgs(port, d, false), '--cluster-enabled', 'yes', '--cluster-config-file', join(d, 'nodes.conf'), '--cluster-node-timeout', '5000']));
    }
    await Promise.all(procs.map((p) => p.answering()));
    const nodes = procs.map((p) => `127.0.0.1:${p.port}`);
    const created = spawnSync('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 60_000 });
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed (${created.status}): ${(created.stdout + created.stderr).slice(-1_000)}`);
    for (const p of procs) {
      await until(`cluster node ${p.port} to report cluster_state:ok`, async () => {
        const info = await p.ask((r) => r.cluster('INFO') as Promise<string>);
        return /cluster_state:ok/.test(info) && /cluster_slots_assigned:16384/.test(info) && new RegExp(`cluster_known_nodes:${primaries}\\b`).test(info);
      });
    }
    return {
      nodes,
      urls: procs.map((p) => p.url),
      env: { REDIS_CLUSTER_NODES: nodes.join(','), REDIS_PREFIX: '{rotator}' },
      stop: async () => {
        await Promise.all(procs.map((p) => p.stop()));
      },
    };
  } catch (err) {
    await Promise.all(procs.map((p) => p.stop()));
    throw err;
  }
}

export const SENTINEL_NAME = 'rotator-primary';

/**
 * What a production Sentinel set adds to the test's plain one. `tls`: TLS only, everywhere (the
 * data nodes, replication, the Sentinels and their links to the nodes and to one another). `auth`:
 * the data nodes' `default` user is off and Rotator connects as its own ACL user (`acl`: its
 * rules, e.g. `~* &* +@all`); replication and the Sentinels use their own narrow users (the rules
 * Redis's Sentinel documentation gives); the Sentinels require `sentinelPassword`.
 */
export interface SentinelSetOptions {
  tls?: TestCertificates;
  auth?: { user: string; password: string; acl: string; sentinelPassword: string };
}

/**
 * The narrowest ACL found to work for every process of Rotator and BullMQ (API, worker, planner,
 * batches, the audit and notification relays, WAIT): its own keys only (REDIS_PREFIX `rotator`),
 * no Pub/Sub channels, every command but the @dangerous ones, plus INFO (BullMQ reads the server's
 * version and eviction policy, ioredis's ready check; without it the worker's start stops with
 * NOPERM). CLIENT LIST (also @dangerous) is needed only by BullMQ's getWorkers, which Rotator
 * does not call.
 */
export const ROTATOR_ACL = 'resetchannels ~rotator:* +@all -@dangerous +info';

/** The users and passwords the set itself uses on its data nodes (test-only values). */
const SET_USERS = {
  replica: { user: 'replication', password: 'replication-test-pw', acl: '+psync +replconf +ping' },
  sentinel: {
    user: 'sentinel',
    password: 'sentinel-link-test-pw',
    acl: 'allchannels +multi +slaveof +ping +exec +subscribe +config|rewrite +role +publish +info +client|setname +client|kill +script|kill',
  },
  harness: { user: 'harness', password: 'harness-test-pw', acl: '~* &* +@all' },
};

/**
 * A primary and one replica (AOF, fsync always, as the chaos run's single Redis), watched by three
 * Sentinels with a quorum of two. `down-after-milliseconds` is 1 s so a SIGKILLed primary is
 * failed over in a few seconds; `failover()` kills it and resolves on the Sentinels' `+switch-master`.
 */
export class TestSentinelSet {
  readonly data: RedisProcess[] = [];
  readonly sentinels: RedisProcess[] = [];
  /** Index in `data` of the node the Sentinels call primary. */
  #primary = 0;

  private constructor(
    readonly dir: string,
    readonly options: SentinelSetOptions,
  ) {}

  static async start(dir: string, options: SentinelSetOptions = {}): Promise<TestSentinelSet> {
    const set = new TestSentinelSet(dir, options);
    try {
      await set.#start();
      return set;
    } catch (err) {
      await set.stop();
      throw err;
    }
  }

  async #start(): Promise<void> {
    const { tls, auth } = this.options;
    const tlsClient: RedisOptions = tls ? { tls: { ca: readFileSync(tls.caFile) } } : {};
    const dataClient: RedisOptions = { ...tlsClient, ...(auth ? { username: SET_USERS.harness.user, password: SET_USERS.harness.password } : {}) };
    const sentinelClient: RedisOptions = { ...tlsClient, ...(auth ? { password: auth.sentinelPassword } : {}) };
    const [primaryPort, replicaPort] = [await freePort(), await freePort()];
    for (const [port, replicaOf] of [[primaryPort, undefined], [replicaPort, primaryPort]] as const) {
      const d = join(this.dir, `data-${port}`);
      mkdirSync(d, { recursive: true, mode: 0o700 });
      const conf = join(d, 'redis.conf');
      const user = (u: { user: string; password: string; acl: string }): string => `user ${u.user} on >${u.password} ${u.acl}`;
      writeFileSync(
        conf,
        [
          ...(tls ? tlsOnlyConfig(port, tls) : []),
          ...(auth
            ? [
                'user default off',
                user(auth),
                user(SET_USERS.replica),
                user(SET_USERS.sentinel),
                user(SET_USERS.harness),
                // Every node may become a replica (the old primary does, after a failover).
                `masteruser ${SET_USERS.replica.user}`,
                `masterauth ${SET_USERS.replica.password}`,
              ]
            : []),
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      this.data.push(new RedisProcess(port, d, [conf, ...dataArgs(port, d, true, !!tls), ...(replicaOf ? ['--replicaof', '127.0.0.1', String(replicaOf)] : [])], dataClient));
    }
    await Promise.all(this.data.map((p) => p.answering()));
    await until('the replica to be in sync with the primary', async () => /master_link_status:up/.test(await this.data[1]!.ask((r) => r.info('replication'))));
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const d = join(this.dir, `sentinel-${port}`);
      mkdirSync(d, { recursive: true, mode: 0o700 });
      // Sentinel rewrites its configuration file as it learns the topology: one file each.
      const conf = join(d, 'sentinel.conf');
      writeFileSync(
        conf,
        [
          ...(tls ? tlsOnlyConfig(port, tls) : [`port ${port}`]),
          'bind 127.0.0.1',
          `dir ${d}`,
          `logfile ${join(d, 'sentinel.log')}`,
          // A Sentinel authenticates to the other Sentinels with its own requirepass: the same on all.
          ...(auth ? [`requirepass ${auth.sentinelPassword}`] : []),
          `sentinel monitor ${SENTINEL_NAME} 127.0.0.1 ${primaryPort} 2`,
          ...(auth ? [`sentinel auth-user ${SENTINEL_NAME} ${SET_USERS.sentinel.user}`, `sentinel auth-pass ${SENTINEL_NAME} ${SET_USERS.sentinel.password}`] : []),
          `sentinel down-after-milliseconds ${SENTINEL_NAME} 1000`,
          `sentinel failover-timeout ${SENTINEL_NAME} 10000`,
          `sentinel parallel-syncs ${SENTINEL_NAME} 1`,
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      this.sentinels.push(new RedisProcess(port, d, [conf, '--sentinel'], sentinelClient));
    }
    await Promise.all(this.sentinels.map((s) => s.answering()));
    // Ready once each Sentinel knows the replica and the two other Sentinels (their hello messages):
    // before that a failover could lack its quorum or a replica to promote.
    for (const s of this.sentinels) {
      await until(`Sentinel ${s.port} to know the replica and the other Sentinels`, async () => {
        const master = await s.ask((r) => r.call('SENTINEL', 'MASTER', SENTINEL_NAME) as Promise<string[]>);
        const field = (name: string): string | undefined => master[master.indexOf(name) + 1];
        return field('num-slaves') === '1' && field('num-other-sentinels') === '2' && field('flags') === 'master';
      });
    }
  }

  /** REDIS_SENTINELS and REDIS_SENTINEL_NAME, with the set's TLS and credentials. */
  get env(): Record<string, string> {
    const { tls, auth } = this.options;
    return {
      REDIS_SENTINELS: this.sentinels.map((s) => `127.0.0.1:${s.port}`).join(','),
      REDIS_SENTINEL_NAME: SENTINEL_NAME,
      ...(tls ? { REDIS_TLS: 'true', REDIS_TLS_CA_FILE: tls.caFile } : {}),
      ...(auth ? { REDIS_USERNAME: auth.user, REDIS_PASSWORD: auth.password, REDIS_SENTINEL_PASSWORD: auth.sentinelPassword } : {}),
    };
  }

  get primary(): RedisProcess {
    return this.data[this.#primary]!;
  }

  /**
   * SIGKILL the primary and resolve once a Sentinel announces `+switch-master` to the replica
   * (subscribed before the kill, so the event cannot be missed); returns how long that took.
   */
  async failover(): Promise<{ ms: number; newPrimary: string; formerPort: number }> {
    const old = this.primary;
    const sub = new Redis(this.sentinels[0]!.url, { maxRetriesPerRequest: null, ...this.sentinels[0]!.client });
    sub.on('error', () => undefined);
    try {
      await sub.subscribe('+switch-master');
      const switched = new Promise<string>((resolve) =>
        sub.on('message', (_channel: string, message: string) => {
          // "<name> <old-ip> <old-port> <new-ip> <new-port>"
          const [name, , , ip, port] = message.split(' ');
          if (name === SENTINEL_NAME) resolve(`${ip}:${port}`);
        }),
      );
      const t0 = Date.now();
      await old.kill();
      const newPrimary = await switched;
      this.#primary = this.data.findIndex((p) => `127.0.0.1:${p.port}` === newPrimary);
      if (this.#primary < 0) throw new Error(`the Sentinels promoted ${newPrimary}, which is not one of this set's nodes`);
      return { ms: Date.now() - t0, newPrimary, formerPort: old.port };
    } finally {
      sub.disconnect();
    }
  }

  /**
   * Start the node `failover()` killed again; resolves once it answers. It comes back as the
   * primary it was, until the Sentinels turn it into a replica of the new one (which took up to
   * 20 s on a loaded host: `rejoined()` waits for that).
   */
  async restartFormerPrimary(port: number): Promise<void> {
    await this.data.find((p) => p.port === port)!.restart();
  }

  /** Whether every data node but the primary replicates it, its link up. */
  async rejoined(): Promise<boolean> {
    for (const node of this.data.filter((p) => p !== this.primary)) {
      if (!/role:slave[\s\S]*master_link_status:up/.test(await node.ask((r) => r.info('replication')).catch(() => ''))) return false;
    }
    return true;
  }

  /** Every byte the data nodes persisted (their AOF files), for leak scans. */
  persistedText(): string {
    const out: string[] = [];
    const walk = (d: string): void => {
      for (const name of readdirSync(d)) {
        const p = join(d, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (!name.endsWith('.log') && !name.endsWith('.conf')) out.push(readFileSync(p).toString('latin1'));
      }
    };
    for (const p of this.data) walk(p.dir);
    return out.join('\n');
  }

  async stop(): Promise<void> {
    await Promise.all([...this.sentinels, ...this.data].map((p) => p.stop()));
  }
}
