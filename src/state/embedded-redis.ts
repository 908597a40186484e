import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';

/**
 * The redis-server `npm start` runs for itself when REDIS_URL is unset: one per data directory,
 * reachable only by this data directory's processes, and gone when its parent is.
 *
 * Files in the data directory's `redis/` folder:
 * - `redis.password` (0600): generated once; the server runs with `requirepass`.
 * - `redis.conf` (0600): written at each start (it holds the password, so it stays off the command
 *   line, which every user of the host can read in `ps`).
 * - `redis.sock`: the server's only listener (`port 0`). A Unix socket path must fit `sun_path`
 *   (104 bytes with its NUL on macOS, 108 on Linux); past that the server listens on a free
 *   loopback port instead.
 * - `instance.json` (0600): who owns the server (ownerPid), the server's pid and where it listens.
 *   Created exclusively, so it is also the data directory's lock: a second process on the same
 *   directory is refused rather than handed another process's Redis, and `audit:verify` finds the
 *   running server here.
 *
 * Stopping with the parent: redis-server runs under a small `sh` supervisor whose stdin is a pipe
 * from the parent. The kernel closes that pipe whenever the parent goes, however it goes (SIGKILL
 * and crashes included); the supervisor reads EOF and sends redis-server SIGTERM, which writes the
 * AOF and exits. The supervisor runs in its own session, so a Ctrl-C in the terminal reaches the
 * parent only: Rotator drains its work while Redis still serves, then stops it.
 */
export interface EmbeddedRedis {
  /** For ioredis (connectRedis, new Redis(url)): carries the password. Never log it; log `location`. */
  url: string;
  /** Where it listens, without the password: `unix:/…/redis.sock` or `127.0.0.1:<port>`. */
  location: string;
  /** redis-server's process id. */
  pid: number;
  /** Settles when the server has exited, whether stopped or not. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
}

/** A problem starting or reaching the embedded Redis; the message is one line that says what to do. */
export class EmbeddedRedisError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddedRedisError';
  }
}

export class RedisNotInstalledError extends EmbeddedRedisError {
  constructor() {
    super('redis-server is not installed: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set REDIS_URL to a running Redis');
    this.name = 'RedisNotInstalledError';
  }
}

const PASSWORD_FILE = 'redis.password';
const CONF_FILE = 'redis.conf';
const INSTANCE_FILE = 'instance.json';
const SOCKET_FILE = 'redis.sock';
/** The longest socket path every platform takes: macOS's sun_path is 104 bytes, NUL included. */
export const MAX_SOCKET_PATH_BYTES = 103;
/** A lock younger than this whose server does not answer yet belongs to a process still starting it. */
const STARTING_GRACE_MS = 30_000;
const READY_TIMEOUT_MS = 30_000;

interface Instance {
  ownerPid: number;
  startedAt: number;
  redisPid?: number;
  socket?: string;
  host?: string;
  port?: number;
}

// sh supervisor: fd 3 keeps the parent's pipe; redis-server gets /dev/null as stdin and writes its
// console output to stderr (which the parent reads for error messages). The first line on stdout is
// redis-server's pid. The watcher subshell blocks on the pipe and stops redis-server at EOF.
const SUPERVISOR = [
  'exec 3<&0 </dev/null',
  'redis-server "$1" >&2 &',
  'rpid=$!',
  'echo "$rpid"',
  '(while read -r _ <&3; do :; done; kill -TERM "$rpid" 2>/dev/null) &',
  'wpid=$!',
  'wait "$rpid"',
  'code=$?',
  'kill "$wpid" 2>/dev/null',
  'exit "$code"',
].join('\n');

/**
 * Start this data directory's redis-server (AOF on unless `persist: false`), or refuse with one
 * line when another live process owns the directory. `port` forces a loopback TCP listener on that
 * port (tests; the default is the Unix socket).
 */
export async function startEmbeddedRedis(opts: { dir: string; port?: number; persist?: boolean }): Promise<EmbeddedRedis> {
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error) throw new RedisNotInstalledError();
  const dir = resolve(opts.dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const password = readOrCreatePassword(dir);
  await lockDataDir(dir, password);
  try {
    return await spawnLocked(dir, password, opts);
  } catch (err) {
    releaseLock(dir);
    throw err;
  }
}

async function spawnLocked(dir: string, password: string, opts: { port?: number; persist?: boolean }): Promise<EmbeddedRedis> {
  const persist = opts.persist ?? true;
  const socket = join(dir, SOCKET_FILE);
  let useSocket = opts.port === undefined && Buffer.byteLength(socket) <= MAX_SOCKET_PATH_BYTES;
  // A free port may be taken between the look and redis-server's bind: try a few. A file system
  // that cannot hold a Unix socket (some network and shared-folder mounts) gets the port instead.
  for (let attempt = 0; ; attempt++) {
    const port = useSocket ? 0 : (opts.port ?? (await freePort()));
    const listen: Listen = useSocket ? { socket } : { host: '127.0.0.1', port };
    try {
      return await spawnServer(dir, password, persist, listen);
    } catch (err) {
      if (useSocket && err instanceof EmbeddedRedisError && /unix socket/i.test(err.message)) {
        useSocket = false;
        continue;
      }
      if (!(err instanceof PortTakenError) || opts.port !== undefined || attempt >= 2) throw err;
    }
  }
}

type Listen = { socket: string } | { host: string; port: number };

class PortTakenError extends EmbeddedRedisError {}

async function spawnServer(dir: string, password: string, persist: boolean, listen: Listen): Promise<EmbeddedRedis> {
  const conf = join(dir, CONF_FILE);
  const lines = [
    ...('socket' in listen ? ['port 0', `unixsocket ${quote(listen.socket)}`, 'unixsocketperm 700'] : [`port ${listen.port}`, `bind ${listen.host}`]),
    `dir ${quote(dir)}`,
    `appendonly ${persist ? 'yes' : 'no'}`,
    'save ""',
    'maxmemory-policy noeviction',
    'protected-mode yes',
    'daemonize no',
    `logfile ${quote(persist ? join(dir, 'redis.log') : '')}`,
    `requirepass ${password}`,
  ];
  writePrivate(conf, lines.join('\n') + '\n');

  const child: ChildProcess = spawn('sh', ['-c', SUPERVISOR, 'rotator-redis-supervisor', conf], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('exit', (code, signal) => res({ code, signal })));
  const redisPid = await new Promise<number>((res, rej) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^(\d+)\n/.exec(out);
      if (m) res(Number(m[1]));
    });
    child.once('error', rej);
    void exited.then(() => rej(new EmbeddedRedisError(`the redis-server supervisor exited before starting it: ${oneLine(stderr)}`)));
  });

  const url = 'socket' in listen ? `${listen.socket}?password=${password}` : `redis://:${password}@${listen.host}:${listen.port}`;
  const location = 'socket' in listen ? `unix:${listen.socket}` : `${listen.host}:${listen.port}`;
  const stopChild = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.stdin?.end();
    const force = setTimeout(() => {
      killQuietly(redisPid, 'SIGKILL');
      child.kill('SIGKILL');
    }, 15_000);
    await exited;
    clearTimeout(force);
  };

  try {
    await waitUntilServing({ url, location, redisPid, conf, exited, stderr: () => stderr, logFile: persist ? join(dir, 'redis.log') : undefined });
  } catch (err) {
    await stopChild();
    throw err;
  }

  writePrivate(join(dir, INSTANCE_FILE), JSON.stringify({ ownerPid: process.pid, startedAt: Date.now(), redisPid, ...listen } satisfies Instance));
  let stopping = false;
  void exited.then(() => {
    // Whoever stopped it, the lock and the socket no longer describe a server.
    if (!stopping) releaseLock(dir);
  });
  // Neither the supervisor nor its pipes keep the parent's event loop alive.
  child.unref();
  for (const s of [child.stdin, child.stdout, child.stderr]) (s as unknown as { unref?: () => void } | null)?.unref?.();
  return {
    url,
    location,
    pid: redisPid,
    exited,
    async stop() {
      if (stopping) return exited.then(() => undefined);
      stopping = true;
      await stopChild();
      releaseLock(dir);
    },
  };
}

/** Poll until the server answers with our password, then prove it is the process we started. */
async function waitUntilServing(o: {
  url: string;
  location: string;
  redisPid: number;
  conf: string;
  exited: Promise<unknown>;
  stderr: () => string;
  logFile?: string;
}): Promise<void> {
  let gone = false;
  void o.exited.then(() => (gone = true));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (gone) {
      const why = oneLine(o.stderr() || tail(o.logFile));
      if (/Failed opening Unix socket/i.test(why)) throw new EmbeddedRedisError(`embedded redis-server could not open its Unix socket (${o.location}): ${why}`);
      if (/Address already in use/i.test(why)) throw new PortTakenError(`embedded redis-server could not listen on ${o.location}: the address is in use`);
      throw new EmbeddedRedisError(`embedded redis-server exited at start: ${why || 'no output'}${o.logFile ? ` (see ${o.logFile})` : ''}`);
    }
    const identity = await identify(o.url).catch(() => undefined);
    if (identity) {
      if (identity.pid !== o.redisPid || identity.configFile !== o.conf) {
        // Another server took the address first (our own then fails to bind): never use it.
        throw new PortTakenError(`the Redis answering at ${o.location} is not the one this data directory started (pid ${identity.pid}, not ${o.redisPid}): stop whatever listens there`);
      }
      return;
    }
    if (Date.now() > deadline) throw new EmbeddedRedisError(`embedded redis-server did not answer on ${o.location} within ${READY_TIMEOUT_MS / 1000} s${o.logFile ? ` (see ${o.logFile})` : ''}`);
    await sleep(50);
  }
}

/** The server's pid and config file (INFO server), with the given credentials; throws when it does not answer or refuses them. */
async function identify(url: string, timeoutMs = 2_000): Promise<{ pid: number; configFile: string }> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, connectTimeout: timeoutMs });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    const info = await probe.info('server');
    const field = (name: string): string => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim() ?? '';
    return { pid: Number(field('process_id')), configFile: field('config_file') };
  } finally {
    probe.disconnect();
  }
}

/**
 * The data directory's lock: `instance.json`, created exclusively. An existing one is honoured
 * while its owner lives and its server answers (or is still being started); otherwise it is stale
 * (the owner died) and is replaced — after stopping a server the dead owner left behind, if it is
 * still running and provably this directory's.
 */
async function lockDataDir(dir: string, password: string): Promise<void> {
  const path = join(dir, INSTANCE_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, JSON.stringify({ ownerPid: process.pid, startedAt: Date.now() } satisfies Instance));
      closeSync(fd);
      await refuseEarlierVersionsServer(dir);
      return;
    } catch (err) {
      if (err instanceof EmbeddedRedisError) {
        releaseLock(dir);
        throw err;
      }
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = readInstance(dir);
    const serving = held ? await instanceServes(dir, held, password) : false;
    if (held && isAlive(held.ownerPid)) {
      if (serving || Date.now() - held.startedAt < STARTING_GRACE_MS) {
        throw new EmbeddedRedisError(
          `${parentDir(dir)} is in use by another Rotator process (pid ${held.ownerPid}${held.redisPid ? `, its redis-server at ${describe(held)}` : ''}): stop it, give this process another DATA_DIR, or run a Redis of your own and set REDIS_URL in both`,
        );
      }
    }
    if (serving && held) await shutdown(urlOf(held, password));
    unlinkQuietly(path);
  }
  throw new EmbeddedRedisError(`could not lock ${path}: another process keeps replacing it`);
}

/**
 * Earlier versions ran the embedded server on 127.0.0.1:6390 without a password and could leave it
 * running after a failed start. Two servers appending to one AOF corrupt it: if that server still
 * serves this directory, say how to stop it.
 */
async function refuseEarlierVersionsServer(dir: string): Promise<void> {
  const probe = new Redis({ host: '127.0.0.1', port: 6390, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, connectTimeout: 500 });
  probe.on('error', () => undefined);
  let serverDir: string | undefined;
  try {
    await probe.connect();
    const reply = (await probe.call('CONFIG', 'GET', 'dir')) as string[];
    serverDir = reply[1];
  } catch {
    return;
  } finally {
    probe.disconnect();
  }
  if (serverDir && resolve(serverDir) === dir) {
    throw new EmbeddedRedisError(`a redis-server left by an earlier Rotator still serves ${dir} on 127.0.0.1:6390: stop it first (redis-cli -p 6390 shutdown)`);
  }
}

function releaseLock(dir: string): void {
  const held = readInstance(dir);
  if (held && held.ownerPid !== process.pid) return;
  unlinkQuietly(join(dir, INSTANCE_FILE));
}

function readInstance(dir: string): Instance | undefined {
  try {
    const v = JSON.parse(readFileSync(join(dir, INSTANCE_FILE), 'utf8')) as Instance;
    return typeof v.ownerPid === 'number' ? v : undefined;
  } catch {
    return undefined;
  }
}

async function instanceServes(dir: string, inst: Instance, password: string): Promise<boolean> {
  if (!inst.redisPid || (!inst.socket && !inst.port)) return false;
  const who = await identify(urlOf(inst, password), 1_000).catch(() => undefined);
  return !!who && who.pid === inst.redisPid && who.configFile === join(dir, CONF_FILE);
}

async function shutdown(url: string): Promise<void> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  r.on('error', () => undefined);
  try {
    await r.connect();
    await r.call('SHUTDOWN').catch(() => undefined);
  } catch {
    // already gone
  } finally {
    r.disconnect();
  }
}

function urlOf(inst: Instance, password: string): string {
  return inst.socket ? `${inst.socket}?password=${password}` : `redis://:${password}@${inst.host ?? '127.0.0.1'}:${inst.port}`;
}

function describe(inst: Instance): string {
  return inst.socket ? `unix:${inst.socket}` : `${inst.host ?? '127.0.0.1'}:${inst.port}`;
}

export interface DataDirRedis {
  url: string;
  location: string;
  /** true when this call started the server (nothing was running); stop() then stops it. */
  started: boolean;
  stop(): Promise<void>;
}

/**
 * The data directory's Redis for a command-line tool (audit:verify): the running server when a
 * Rotator process owns the directory, else the server started here on the directory's data and
 * stopped again by `stop()`.
 */
export async function openDataDirRedis(redisDir: string): Promise<DataDirRedis> {
  const dir = resolve(redisDir);
  if (!existsSync(dir)) throw new EmbeddedRedisError(`no embedded Redis data in ${dir}: set DATA_DIR to the Rotator's data directory, or REDIS_URL to its Redis`);
  const held = readInstance(dir);
  if (held && isAlive(held.ownerPid)) {
    const password = readOrCreatePassword(dir);
    if (await instanceServes(dir, held, password)) {
      return { url: urlOf(held, password), location: describe(held), started: false, stop: async () => undefined };
    }
  }
  const server = await startEmbeddedRedis({ dir });
  return { url: server.url, location: server.location, started: true, stop: () => server.stop() };
}

function readOrCreatePassword(dir: string): string {
  const path = join(dir, PASSWORD_FILE);
  try {
    const fd = openSync(path, 'wx', 0o600);
    const password = randomBytes(32).toString('hex');
    writeSync(fd, password + '\n');
    closeSync(fd);
    return password;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new EmbeddedRedisError(`cannot create ${path}: ${(err as Error).message}`);
  }
  if ((statSync(path).mode & 0o077) !== 0) throw new EmbeddedRedisError(`${path} can be read by other users: chmod 600 ${path}`);
  const password = readFileSync(path, 'utf8').trim();
  if (!/^[0-9a-f]{32,}$/.test(password)) throw new EmbeddedRedisError(`${path} does not hold a generated password: delete it and start again (a new one is generated)`);
  return password;
}

function writePrivate(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600);
}

/** redis.conf string: double-quoted, with backslash escapes. */
function quote(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`).replace(/\n/g, '\\n')}"`;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone already
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}

function parentDir(redisDir: string): string {
  return resolve(redisDir, '..');
}

function tail(file: string | undefined): string {
  if (!file) return '';
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean).slice(-3).join(' ');
  } catch {
    return '';
  }
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim().slice(-400);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? res(addr.port) : rej(new Error('no port'))));
    });
  });
}
