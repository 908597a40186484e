import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { link, lstat, mkdtemp, readdir, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { withFileLock, type LockOptions } from '../../providers/file/lock.ts';
import { ownerContent } from '../../providers/file/owner.ts';
import { StoreError } from '../../providers/store-error.ts';

const deadPid = (): number => spawnSync(process.execPath, ['-e', '']).pid;
const lockContent = (pid: number, at: number): string => `${pid} ${at} ${randomBytes(8).toString('hex')}`;
const LOCK_MODULE = new URL('../../providers/file/lock.ts', import.meta.url).pathname;
/** A stale window no test outlives: a lock taken under it was not broken for its age. */
const NEVER_STALE = 3_600_000;
/**
 * How long a writer may take to get a lock that is free or breakable: a guard, far below the 30 s
 * stale window (so a lock waited out by age still fails) and far above what breaking one takes on
 * a busy machine (it was 1 s, about one slow fsync).
 */
const GUARD_MS = 10_000;

describe('file store lock', () => {
  let dir: string;
  let lock: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-lock-'));
    lock = join(dir, 'x.enc.lock');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  /** The lock is free within `timeoutMs`: a writer gets it. */
  const acquiredWithin = (timeoutMs: number, opts: LockOptions = {}) => withFileLock(lock, dir, async () => 'ran', { timeoutMs, ...opts });
  const ownerFiles = async (): Promise<string[]> => (await readdir(dir)).filter((n) => n.startsWith('.owner-'));

  /** Another process's lock of this version: a hard link to its owner file. */
  async function plantLock(pid: number): Promise<string> {
    const nonce = randomBytes(4).toString('hex');
    const owner = join(dir, `.owner-${pid}-${nonce}`);
    await writeFile(owner, ownerContent(pid, nonce));
    await link(owner, lock);
    return owner;
  }

  it('is a hard link to this process\'s owner file while held, and only the link goes after', async () => {
    const seen = await withFileLock(lock, dir, async () => {
      const [owner] = await ownerFiles();
      return { owner: owner!, lock: await lstat(lock), ownerStat: await lstat(join(dir, owner!)), text: await readFile(lock, 'utf8') };
    });
    expect(seen.owner).toMatch(new RegExp(`^\\.owner-${process.pid}-[0-9a-f]+$`));
    expect(seen.lock.isFile()).toBe(true);
    expect(seen.lock.ino).toBe(seen.ownerStat.ino);
    expect(seen.lock.nlink).toBe(2);
    expect(seen.text).toMatch(new RegExp(`^${process.pid} - [0-9a-f]+ \\S+$`));
    await expect(lstat(lock)).rejects.toMatchObject({ code: 'ENOENT' });
    // The owner file stays, with the same inode, for the next lock: taking and releasing allocate none.
    expect((await lstat(join(dir, seen.owner))).ino).toBe(seen.ownerStat.ino);
    await acquiredWithin(100);
    expect(await ownerFiles()).toEqual([seen.owner]);
  });

  it('reads, to the lock parser of the versions before it, as a pid with no time: never stale by age to them', async () => {
    const text = await withFileLock(lock, dir, async () => readFile(lock, 'utf8'));
    // What those versions did with a lock that is not a symbolic link (lock.ts before the hard link).
    const [pid, at] = text.split(' ');
    expect(Number(pid)).toBe(process.pid);
    expect(Number(at) > 0).toBe(false);
  });

  it('a second writer waits for the holder and runs after it', async () => {
    const order: string[] = [];
    let release!: () => void;
    const first = withFileLock(lock, dir, async () => {
      order.push('first in');
      await new Promise<void>((r) => (release = r));
      order.push('first out');
    });
    while (!release) await new Promise((r) => setTimeout(r, 2));
    const second = withFileLock(lock, dir, async () => order.push('second'));
    await new Promise((r) => setTimeout(r, 100));
    expect(order).toEqual(['first in']);
    release();
    await Promise.all([first, second]);
    expect(order).toEqual(['first in', 'first out', 'second']);
  });

  it('two processes incrementing a counter under the lock, 200 times each, end at exactly 400', async () => {
    const counter = join(dir, 'counter');
    await writeFile(counter, '0');
    // Read, yield, write: without mutual exclusion the two lose each other's increments.
    const child = `
      const { withFileLock } = await import(${JSON.stringify(LOCK_MODULE)});
      const { readFile, writeFile } = await import('node:fs/promises');
      for (let i = 0; i < 200; i++) {
        await withFileLock(${JSON.stringify(lock)}, ${JSON.stringify(dir)}, async () => {
          const n = Number(await readFile(${JSON.stringify(counter)}, 'utf8'));
          await new Promise((r) => setTimeout(r, Math.random() < 0.5 ? 0 : 1));
          await writeFile(${JSON.stringify(counter)}, String(n + 1));
        });
      }`;
    const run = () =>
      new Promise<number | null>((done, fail) => {
        const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child], { stdio: ['ignore', 'inherit', 'inherit'] });
        p.on('error', fail);
        p.on('exit', done);
      });
    expect(await Promise.all([run(), run()])).toEqual([0, 0]);
    expect(await readFile(counter, 'utf8')).toBe('400');
  });

  it('breaks the lock of a dead process at once, and removes its owner file once it holds no lock', async () => {
    const owner = await plantLock(deadPid());
    // "At once": by the dead-holder rule, not by age. With a stale window no test outlives, only
    // that rule can let the writer in; the timeout is a guard, not a measure of speed.
    expect(await acquiredWithin(GUARD_MS, { staleMs: NEVER_STALE })).toBe('ran');
    await expect(lstat(owner)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('several processes waiting on a dead process\'s lock break it once: never two holders at a time', async () => {
    const ROUNDS = 15;
    const WAITERS = 5;
    const inside = join(dir, 'inside');
    // Each round every waiter starts when `go-<round>` appears, all judging the same dead lock stale.
    const child = (id: number): string => `
      const { withFileLock } = await import(${JSON.stringify(LOCK_MODULE)});
      const { existsSync } = await import('node:fs');
      const { open, unlink, writeFile } = await import('node:fs/promises');
      const at = (name) => ${JSON.stringify(dir)} + '/' + name;
      for (let round = 0; round < ${ROUNDS}; round++) {
        while (!existsSync(at('go-' + round))) await new Promise((r) => setTimeout(r, 1));
        await withFileLock(${JSON.stringify(lock)}, ${JSON.stringify(dir)}, async () => {
          // O_EXCL: fails if another holder is inside.
          await (await open(${JSON.stringify(inside)}, 'wx')).close();
          await new Promise((r) => setTimeout(r, 2));
          await unlink(${JSON.stringify(inside)});
        });
        await writeFile(at('done-' + round + '-' + ${id}), '');
      }`;
    let failed = false;
    const exits = Array.from({ length: WAITERS }, (_, id) => {
      const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child(id)], { stdio: ['ignore', 'inherit', 'inherit'] });
      return new Promise<number | null>((done) =>
        p.on('exit', (code) => {
          failed ||= code !== 0;
          done(code);
        }),
      );
    });
    const finished = async (round: number) => (await readdir(dir)).filter((n) => n.startsWith(`done-${round}-`)).length;
    for (let round = 0; round < ROUNDS && !failed; round++) {
      await plantLock(deadPid());
      await writeFile(join(dir, `go-${round}`), '');
      while (!failed && (await finished(round)) < WAITERS) await new Promise((r) => setTimeout(r, 5));
    }
    // When one failed, the others run through the remaining rounds and exit.
    for (let round = 0; round < ROUNDS; round++) await writeFile(join(dir, `go-${round}`), '');
    expect(await Promise.all(exits)).toEqual(Array(WAITERS).fill(0));
  });

  it('honours a live process\'s lock while its inode is touched within the stale window, and breaks it after', async () => {
    // Times are read from the inode (its ctime, what the lock judges by), and each wait runs until
    // a moment the window puts on one side or the other with a second to spare either way. (It
    // was 600 ms with fixed sleeps of 400, 300 and 500 ms: 150 ms of margin, which a timer firing
    // late on a busy machine used up.)
    const STALE = 3_000;
    const ctime = async (): Promise<number> => (await lstat(owner)).ctimeMs;
    const until = async (at: number): Promise<void> => {
      while (Date.now() < at) await new Promise((r) => setTimeout(r, Math.min(50, at - Date.now())));
    };
    const owner = await plantLock(process.ppid);
    const planted = await ctime();
    await expect(acquiredWithin(150, { staleMs: STALE })).rejects.toMatchObject({ code: 'store_unavailable' });
    // The holder takes or releases another lock: link() sets the shared inode's ctime, so it looks alive.
    await until(planted + STALE - 1_000);
    await link(owner, join(dir, 'y.enc.lock'));
    const touched = await ctime();
    expect(touched).toBeGreaterThan(planted);
    // Past the window counted from the planting, well within it counted from the touch: honoured.
    await until(planted + STALE + 200);
    await expect(acquiredWithin(150, { staleMs: STALE })).rejects.toMatchObject({ code: 'store_unavailable' });
    // No sign of life for longer than the stale window: broken. The owner of a live process stays.
    await until(touched + STALE + 200);
    expect(await acquiredWithin(GUARD_MS, { staleMs: STALE })).toBe('ran');
    expect((await lstat(owner)).nlink).toBe(2);
  });

  it('removes a lock of its own that an earlier holder in this process could not remove, instead of waiting on it', async () => {
    await withFileLock(lock, dir, async () => undefined);
    const [owner] = await ownerFiles();
    // What a release refused by the directory (EPERM under `chattr +i`) leaves behind.
    await link(join(dir, owner!), lock);
    // Removed as ours, not waited out: no age can make it stale within the test.
    expect(await acquiredWithin(GUARD_MS, { staleMs: NEVER_STALE })).toBe('ran');
  });

  it('the owner files of dead processes that hold no lock are swept when a process first locks here', async () => {
    const dead = deadPid();
    const idle = join(dir, `.owner-${dead}-aa`);
    await writeFile(idle, ownerContent(dead, 'aa'));
    const holding = await plantLock(dead);
    await link(holding, join(dir, 'other.enc.lock'));
    const live = join(dir, `.owner-${process.ppid}-bb`);
    await writeFile(live, ownerContent(process.ppid, 'bb'));
    expect(await acquiredWithin(GUARD_MS)).toBe('ran');
    await expect(lstat(idle)).rejects.toMatchObject({ code: 'ENOENT' });
    // Still linked from another entry's lock: its owner file goes with that lock's breaker.
    expect((await lstat(holding)).nlink).toBe(2);
    expect((await lstat(live)).nlink).toBe(1);
  });

  it('temp files that killed writers left are swept too, once old enough that no writer can still rename them', async () => {
    const old = join(dir, `x.enc.${deadPid()}.0a1b2c3d.tmp`);
    const fresh = join(dir, `y.enc.${process.pid}.deadbeef.tmp`);
    await writeFile(old, 'partial');
    await writeFile(fresh, 'in progress');
    const hourAgo = new Date(Date.now() - 3_600_000);
    await utimes(old, hourAgo, hourAgo);
    expect(await acquiredWithin(GUARD_MS)).toBe('ran');
    await expect(lstat(old)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await lstat(fresh)).isFile()).toBe(true);
  });

  it('a lock of the previous version (a symbolic link) held by a live process past the timeout is store_unavailable, and is left alone', async () => {
    const content = lockContent(process.ppid, Date.now());
    await symlink(content, lock);
    const err = await acquiredWithin(150).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('store_unavailable');
    expect(await readlink(lock)).toBe(content);
  });

  it('breaks a symbolic-link lock of a dead process, and one of a live process older than the stale window', async () => {
    await symlink(lockContent(deadPid(), Date.now()), lock);
    expect(await acquiredWithin(GUARD_MS)).toBe('ran');
    await symlink(lockContent(process.ppid, Date.now() - 60_000), lock);
    expect(await acquiredWithin(GUARD_MS)).toBe('ran');
  });

  it('recognises a regular-file lock of an older version: honoured while live, broken when stale', async () => {
    await writeFile(lock, lockContent(process.ppid, Date.now()));
    await expect(acquiredWithin(150)).rejects.toMatchObject({ code: 'store_unavailable' });
    await writeFile(lock, lockContent(deadPid(), Date.now()));
    expect(await acquiredWithin(GUARD_MS)).toBe('ran');
    await writeFile(lock, lockContent(process.ppid, Date.now() - 60_000));
    expect(await acquiredWithin(GUARD_MS)).toBe('ran');
  });

  it('an empty regular-file lock (its writer died between create and write) goes stale by its mtime', async () => {
    await writeFile(lock, '');
    await expect(acquiredWithin(150)).rejects.toMatchObject({ code: 'store_unavailable' });
    const old = new Date(Date.now() - 60_000);
    await utimes(lock, old, old);
    expect(await acquiredWithin(GUARD_MS)).toBe('ran');
  });
});
