import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_SOCKET_PATH_BYTES, openDataDirRedis, startEmbeddedRedis, type EmbeddedRedis } from '../../src/state/embedded-redis.ts';
import { processAlive, waitUntil } from './support.ts';

/**
 * The embedded redis-server (`npm start` without REDIS_URL): one per data directory, behind a
 * generated password, never another process's, gone with its parent. Issue 12, item 8.
 */
const root = mkdtempSync(join(tmpdir(), 'rotator-embedded-'));
const started: EmbeddedRedis[] = [];
afterAll(async () => {
  for (const s of started) await s.stop();
  rmSync(root, { recursive: true, force: true });
});

async function start(dir: string, opts: { port?: number; persist?: boolean } = {}): Promise<EmbeddedRedis> {
  const s = await startEmbeddedRedis({ dir, persist: false, ...opts });
  started.push(s);
  return s;
}

async function attempt(url: string): Promise<string> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  let reason = '';
  r.on('error', (err: Error) => (reason ||= err.message));
  try {
    await r.connect();
    return await r.ping();
  } catch (err) {
    // The server's refusal arrives as an error event; connect() then only says the connection closed.
    return reason || (err as Error).message;
  } finally {
    r.disconnect();
  }
}

function instance(dir: string): { ownerPid: number; redisPid: number; socket?: string; port?: number } {
  return JSON.parse(readFileSync(join(dir, 'instance.json'), 'utf8')) as { ownerPid: number; redisPid: number; socket?: string; port?: number };
}

describe('embedded Redis', () => {
  it('gives each data directory its own server, on a socket in that directory, behind its own password', async () => {
    const a = await start(join(root, 'a', 'redis'));
    const b = await start(join(root, 'b', 'redis'));
    expect(a.pid).not.toBe(b.pid);
    expect(a.location).toBe(`unix:${join(root, 'a', 'redis', 'redis.sock')}`);
    expect(b.location).toBe(`unix:${join(root, 'b', 'redis', 'redis.sock')}`);
    expect(await attempt(a.url)).toBe('PONG');
    expect(await attempt(b.url)).toBe('PONG');

    for (const dir of ['a', 'b']) {
      const pw = join(root, dir, 'redis', 'redis.password');
      expect(statSync(pw).mode & 0o777).toBe(0o600);
      expect(statSync(join(root, dir, 'redis', 'redis.conf')).mode & 0o777).toBe(0o600);
    }
    const pwA = readFileSync(join(root, 'a', 'redis', 'redis.password'), 'utf8').trim();
    const pwB = readFileSync(join(root, 'b', 'redis', 'redis.password'), 'utf8').trim();
    expect(pwA).not.toBe(pwB);
    // No password, or the other directory's: refused.
    expect(await attempt(join(root, 'a', 'redis', 'redis.sock'))).toMatch(/NOAUTH/);
    expect(await attempt(`${join(root, 'a', 'redis', 'redis.sock')}?password=${pwB}`)).toMatch(/WRONGPASS|invalid/i);
    // The password is never on the command line (which every user of the host can read).
    expect(readFileSync(`/proc/${a.pid}/cmdline`, 'utf8')).not.toContain(pwA);
  });

  it('refuses a second server on a data directory whose owner is alive, in one line', async () => {
    const dir = join(root, 'busy', 'redis');
    const first = await start(dir);
    await expect(startEmbeddedRedis({ dir, persist: false })).rejects.toThrow(/^\S+busy is in use by another Rotator process \(pid \d+, its redis-server at unix:.*\): stop it, give this process another DATA_DIR, or run a Redis of your own and set REDIS_URL in both$/);
    // The first keeps working (its socket was not taken over).
    expect(await attempt(first.url)).toBe('PONG');
  });

  it('never hands out a Redis it did not start: a foreign server on its port is refused', async () => {
    // The bug this guards: a second instance found the fixed port taken and used whatever answered there.
    const port = await freePort();
    const foreign = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    try {
      await waitUntil('the foreign redis-server', async () => (await attempt(`redis://127.0.0.1:${port}`)) === 'PONG');
      await expect(startEmbeddedRedis({ dir: join(root, 'collide', 'redis'), port, persist: false })).rejects.toThrow(/127\.0\.0\.1:\d+/);
      // Nothing of ours is left running, and the directory is not locked.
      await expect(start(join(root, 'collide', 'redis'))).resolves.toMatchObject({ location: expect.stringMatching(/^unix:/) });
    } finally {
      await stopChild(foreign);
    }
  });

  it('falls back to a loopback port recorded in the data directory when the socket path is too long', async () => {
    const dir = join(root, 'x'.repeat(MAX_SOCKET_PATH_BYTES), 'redis');
    mkdirSync(dir, { recursive: true });
    const s = await start(dir);
    expect(s.location).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(instance(dir)).toMatchObject({ port: Number(s.location.split(':')[1]), redisPid: s.pid, ownerPid: process.pid });
    expect(await attempt(s.url)).toBe('PONG');
    expect(await attempt(`redis://${s.location}`)).toMatch(/NOAUTH/);
  });

  it('refuses a password file other users can read, saying how to fix it', async () => {
    const dir = join(root, 'leaky', 'redis');
    await (await startEmbeddedRedis({ dir, persist: false })).stop();
    const pw = join(dir, 'redis.password');
    chmodSync(pw, 0o644);
    await expect(startEmbeddedRedis({ dir, persist: false })).rejects.toThrow(`${pw} can be read by other users: chmod 600 ${pw}`);
    chmodSync(pw, 0o600);
    await expect(start(dir)).resolves.toMatchObject({ location: `unix:${join(dir, 'redis.sock')}` });
  });

  it('falls back to a loopback port when the socket cannot be created there', async () => {
    // Stands in for a file system that cannot hold a Unix socket: a directory sits at its path.
    const dir = join(root, 'nosocket', 'redis');
    mkdirSync(join(dir, 'redis.sock'), { recursive: true });
    const s = await start(dir);
    expect(s.location).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(await attempt(s.url)).toBe('PONG');
  });

  it('a tool attaches to the running server through the data directory, or starts it on its data and stops it again', async () => {
    const dir = join(root, 'tool', 'redis');
    const owner = await startEmbeddedRedis({ dir, persist: true });
    const w = new Redis(owner.url);
    await w.set('marker', 'from the owner');
    w.disconnect();
    const attached = await openDataDirRedis(dir);
    expect(attached).toMatchObject({ started: false, location: owner.location });
    const r = new Redis(attached.url);
    expect(await r.get('marker')).toBe('from the owner');
    r.disconnect();
    await attached.stop();
    expect(processAlive(owner.pid)).toBe(true);

    await owner.stop();
    const own = await openDataDirRedis(dir);
    expect(own.started).toBe(true);
    const r2 = new Redis(own.url);
    expect(await r2.get('marker')).toBe('from the owner');
    r2.disconnect();
    const pid = instance(dir).redisPid;
    await own.stop();
    expect(processAlive(pid)).toBe(false);
  });

  it('stops with its parent, even when the parent is killed with SIGKILL', async () => {
    const dir = join(root, 'orphan', 'redis');
    const parent = spawn(process.execPath, ['--import', 'tsx', '-e', `import('${join(process.cwd(), 'src/state/embedded-redis.ts')}').then(async (m) => { const s = await m.startEmbeddedRedis({ dir: ${JSON.stringify(dir)} }); console.log('pid ' + s.pid); setInterval(() => {}, 1000); })`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    parent.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await waitUntil('the parent to start its redis-server', () => /pid \d+/.test(out), 60_000);
    const redisPid = Number(/pid (\d+)/.exec(out)![1]);
    expect(processAlive(redisPid)).toBe(true);
    parent.kill('SIGKILL');
    await new Promise((r) => parent.once('exit', r));
    await waitUntil('redis-server to stop after its parent was killed', () => !processAlive(redisPid), 10_000);
    // It shut down cleanly (AOF written), and the next start takes the directory over.
    expect(readFileSync(join(dir, 'redis.log'), 'utf8')).toMatch(/ready to exit, bye bye/);
    await expect(start(dir)).resolves.toMatchObject({ location: `unix:${join(dir, 'redis.sock')}` });
  });
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}
