import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/state/redis.ts';
import { startTwilioEmulator, type TwilioEmulator, type TwilioEmulatorOptions } from '../emulators/twilio/server.ts';
import { loadConfig, type Config } from '../../src/config.ts';
import { openSecretStore } from '../../src/stores.ts';
import { secretPath, type SecretStore } from '../../providers/secret-store.ts';
import { Secret } from '../../src/domain/secret.ts';
import { createLogger } from '../../src/logger.ts';
import { startStoreBackend, type StoreBackend, type StoreBackendKind } from './stores.ts';
import { startRedisCluster } from './redis-topologies.ts';

/** Log lines captured from every component in a test, for leak scans. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.lines.push(chunk.toString());
    cb();
  }
  text(): string {
    return this.lines.join('');
  }
}

export interface Stack {
  dir: string;
  /** `url`: the embedded server, or one node of the cluster; `urls`: every server that holds keys (leak scans). */
  redis: Pick<EmbeddedRedis, 'url' | 'stop'> & { urls: string[] };
  emu: TwilioEmulator;
  env: Record<string, string>;
  cfg: Config;
  store: SecretStore;
  backend: StoreBackend;
  logs: LogCapture;
  path(accountSid: string): string;
  /** Give every subaccount a pre-existing key, current in the store (as a user would have). */
  seedAll(): Promise<void>;
  /** The same for these subaccounts only; the others keep an empty store entry (their first rotation is a bootstrap). */
  seed(accountSids: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

export interface StackOptions {
  subaccounts?: number;
  drainSeconds?: number;
  emulator?: TwilioEmulatorOptions;
  env?: Record<string, string>;
  store?: StoreBackendKind;
  /** `cluster`: a three-primary Redis Cluster (REDIS_CLUSTER_NODES, REDIS_PREFIX={rotator}) instead of one embedded server. */
  redis?: 'single' | 'cluster';
}

/** A private Redis, the Twilio emulator and a store backend (default: a file store in a temp dir): what one test needs. */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const dir = await mkdtemp(join(tmpdir(), 'rotator-test-'));
  const redis = opts.redis === 'cluster' ? await clusterRedis(join(dir, 'redis')) : await singleRedis(join(dir, 'redis'));
  const emu = await startTwilioEmulator({ subaccounts: opts.subaccounts ?? 3, ...opts.emulator });
  const backend = await startStoreBackend(opts.store ?? 'file', dir);
  // The AWS SDK takes credentials from this process's environment (its default chain); child
  // processes get them through `env`.
  for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] as const) if (backend.env[name]) process.env[name] = backend.env[name];
  const env: Record<string, string> = {
    ...redis.env,
    TWILIO_ACCOUNT_SID: emu.parent.accountSid,
    TWILIO_AUTH_TOKEN: emu.parent.authToken,
    TWILIO_BASE_URL: emu.url,
    ...backend.env,
    DATA_DIR: join(dir, 'data'),
    DRAIN_SECONDS: String(opts.drainSeconds ?? 0),
    // A job lock a slow or starved process cannot outlive by accident: with a short one (2 s,
    // renewed every second) a worker that did not get the CPU for a second lost its job to a
    // spurious stall, and the test saw a second delivery (and a rotation_busy retry) it did not
    // ask for. Tests that kill workers, and want their jobs back quickly, set a short lock
    // themselves (crash.test.ts). The stalled check stays frequent: it is cheap, and it also sets
    // how often a worker looks for orphaned rotations.
    JOB_LOCK_MS: '30000',
    STALLED_INTERVAL_MS: '500',
    LOG_LEVEL: 'info',
    ...opts.env,
  };
  const cfg = loadConfig(env);
  const store = await openSecretStore(cfg.store);
  const logs = new LogCapture();
  const path = (sid: string): string => secretPath(cfg.secretPathTemplate, sid);
  const seed = async (accountSids: readonly string[]): Promise<void> => {
    for (const sid of accountSids) {
      const key = emu.seedKey(sid, 'initial application key');
      const seedId = crypto.randomUUID();
      await store.putPending(path(sid), seedId, { accountSid: sid, apiKeySid: key.sid, apiKeySecret: new Secret(key.secret) });
      await store.promotePending(path(sid), seedId, key.sid);
    }
  };
  return {
    dir,
    redis,
    emu,
    env,
    cfg,
    store,
    backend,
    logs,
    path,
    seedAll: () => seed(emu.subaccounts.map((s) => s.sid)),
    seed,
    async close() {
      await store.close();
      await backend.close();
      await emu.close();
      await redis.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function singleRedis(dir: string): Promise<Stack['redis'] & { env: Record<string, string> }> {
  const r = await startEmbeddedRedis({ dir, persist: false });
  return { url: r.url, urls: [r.url], stop: () => r.stop(), env: { REDIS_URL: r.url } };
}

async function clusterRedis(dir: string): Promise<Stack['redis'] & { env: Record<string, string> }> {
  const c = await startRedisCluster(dir);
  return { url: c.urls[0]!, urls: c.urls, stop: () => c.stop(), env: c.env };
}

export function testLogger(logs: LogCapture) {
  return createLogger('info', logs);
}

/**
 * Polls `fn` until it returns something truthy: the way a test waits for an event it cannot
 * subscribe to. The deadline is a last guard against a hang, not a statement about speed: keep it
 * generous (the default suits anything that happens in seconds on a quiet machine), and name the
 * event in `what`, which the timeout error repeats together with `lastSeen()` when given.
 */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 50, lastSeen?: () => Promise<string>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) {
      const seen = lastSeen ? await lastSeen().catch((err: Error) => `(could not tell: ${err.message})`) : undefined;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${seen ? `; last seen: ${seen}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** `promise`, or an error naming `what` after `timeoutMs`: a last guard for a promise that may never settle. */
export async function within<T>(what: string, promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, guard]);
  } finally {
    clearTimeout(timer);
  }
}
