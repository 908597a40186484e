import type { Stats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { StoreError } from '../store-error.ts';
import { fileStoreError } from './errors.ts';
import { link, lstat, readlink, unlink } from './fs.ts';
import { alive, forgetOwner, inspectFile, ownerFileOf, ownerOf, parseOwner, provablyDead, type Owner, type OwnerLabel } from './owner.ts';

const STALE_MS = 30_000;

export interface LockOptions {
  /** Give up with store_unavailable after this long. */
  timeoutMs?: number;
  /** A lock whose holder has shown no sign of life for this long is broken. */
  staleMs?: number;
}

/**
 * An exclusive lock around one entry's read-modify-write, so two writers — tasks of one worker or
 * processes on one host — never interleave.
 *
 * Taking it is link(<owner file>, '<entry>.enc.lock'), EEXIST meaning it is held; releasing it is
 * unlink('<entry>.enc.lock'). The owner file (owner.ts, one per process and directory) keeps the
 * inode, so neither allocates nor frees one: ext4's allocator skips every inode freed in the last
 * minutes, and a lock created and deleted per write made that search most of the store's CPU.
 * All locks of one process share that inode and so cannot tell its tasks apart: within a process,
 * writers first take turns in memory, and only the task whose turn it is contends for the file.
 *
 * A lock is stale, and is broken, when
 *  - its holder's pid is provably dead (our pid namespace, not running), or
 *  - its inode's ctime is older than STALE_MS. link() and unlink() set the ctime of the inode they
 *    (un)link, and all of a process's locks are that one inode: the age is the time since the
 *    holder last took or released any lock in this directory. A working process keeps it fresh;
 *    one that has done no lock operation for STALE_MS while holding this lock is hung, or its pid
 *    now belongs to another program. A live process busy with other entries is never broken out of
 *    a slow write by age — the rule before (created over STALE_MS ago) could let a second writer
 *    in while the first one's write had still to land.
 *
 * Breaking one: the breaker takes '<lock>.break' (a link to its own owner file, like a lock),
 * checks that the lock is still the inode, with the same ctime, it judged stale, unlinks it and
 * drops '.break'. Two waiters that both judged a dead holder's lock stale therefore no longer have
 * the slower remove the lock the faster has just taken (a race of the versions before). What is
 * left: a breaker that dies holding '.break' leaves it to be broken like a lock, without that check.
 *
 * Older versions: their locks — a symbolic link, or before that a regular file, reading
 * `<pid> <created ms> <nonce>` — are honoured, and broken when the pid is dead or the lock was
 * created over STALE_MS ago. They read ours as a regular file whose time field is '-', and break it
 * only when its pid is dead. Every version's lock is one name created atomically, so any two exclude
 * each other.
 */
export async function withFileLock<T>(lockPath: string, dir: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const staleMs = opts.staleMs ?? STALE_MS;
  const deadline = Date.now() + timeoutMs;
  const key = resolve(lockPath);
  const timedOut = (): StoreError => new StoreError('store_unavailable', `file store lock ${lockPath} is held by another writer for over ${timeoutMs} ms`);
  await takeTurn(key, deadline, timedOut);
  try {
    const owner = await acquire(lockPath, dir, staleMs, deadline, timedOut);
    const since = Date.now();
    try {
      return await fn();
    } finally {
      // Nobody can have judged a lock stale before its holder had it for STALE_MS.
      await release(lockPath, key, owner, Date.now() - since < staleMs - Math.min(5_000, staleMs / 4));
    }
  } finally {
    endTurn(key);
  }
}

async function acquire(lockPath: string, dir: string, staleMs: number, deadline: number, timedOut: () => StoreError): Promise<Owner> {
  let delay = 2;
  let renewed = false;
  for (;;) {
    let owner: Owner;
    try {
      owner = await ownerOf(dir, staleMs);
    } catch (err) {
      throw fileStoreError(err, 'lock', dir);
    }
    try {
      await link(owner.file, lockPath);
      return owner;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && !renewed) {
        // Our owner file was removed (by hand, or by a sweep that took us for dead): make another.
        forgetOwner(dir, owner);
        renewed = true;
        continue;
      }
      // A directory that refuses new names (EPERM under `chattr +i`, EACCES…) is the store's
      // error, classified like any other: the lock is what denies writes to an immutable directory.
      if (code !== 'EEXIST') throw fileStoreError(err, 'lock', dir);
    }
    if (await breakIfStale(lockPath, dir, owner, staleMs)) continue;
    if (Date.now() > deadline) throw timedOut();
    await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
    delay = Math.min(delay * 2, 50);
  }
}

/**
 * Remove our lock. `blind`: we took it recently, so the name is still ours. Otherwise someone may
 * have judged it stale and taken it: remove it only if it is still our inode (only this task can
 * have linked it there, as it holds this process's turn). When the directory refuses the unlink
 * (EPERM: the immutable attribute was set while we held the lock), keep trying in the background:
 * otherwise every writer of this entry in other processes would wait until our lock goes stale,
 * which is never while this process keeps working on other entries.
 */
async function release(lockPath: string, key: string, owner: Owner, blind: boolean): Promise<void> {
  try {
    if (!blind && (await lstat(lockPath)).ino !== owner.ino) return;
    await unlink(lockPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') retryRelease(lockPath, key, owner);
  }
}

const retrying = new Set<string>();

function retryRelease(lockPath: string, key: string, owner: Owner): void {
  if (retrying.has(key)) return;
  retrying.add(key);
  const attempt = (delay: number): void => {
    const again = (): void => attempt(Math.min(delay * 2, 1_000));
    const t = setTimeout(() => {
      // A task of ours holds the turn: it removes a leftover itself, and may hold the lock by now.
      if (turns.has(key)) return again();
      lstat(lockPath)
        .then((st) => (st.ino === owner.ino ? unlink(lockPath) : undefined))
        .then(
          () => retrying.delete(key),
          (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? retrying.delete(key) : again()),
        );
    }, delay);
    t.unref();
  };
  attempt(200);
}

/** True when the lock is gone or was broken: try to take it again at once. */
async function breakIfStale(lockPath: string, dir: string, owner: Owner, staleMs: number): Promise<boolean> {
  const lock = await inspectLock(lockPath);
  if (lock === 'gone') return true;
  if (!lock) return false;
  if (lock.stat.ino === owner.ino) {
    // Our inode while this task has our turn: a lock an earlier holder here could not remove.
    try {
      await unlink(lockPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
      retryRelease(lockPath, resolve(lockPath), owner);
      throw fileStoreError(err, 'lock', dir);
    }
    return true;
  }
  if (!isStale(lock, staleMs)) return false;
  return breakLock(lockPath, dir, lock, owner, staleMs);
}

async function breakLock(lockPath: string, dir: string, lock: Lock, owner: Owner, staleMs: number): Promise<boolean> {
  const breaker = `${lockPath}.break`;
  try {
    await link(owner.file, breaker);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      // Someone else is breaking it — or died doing so, or is our own leftover: then it goes.
      const other = await inspectLock(breaker);
      if (typeof other === 'object' && (other.stat.ino === owner.ino || isStale(other, staleMs))) await unlink(breaker).catch(() => undefined);
    }
    return false;
  }
  try {
    const now = await lstat(lockPath);
    // Released and taken again (by anyone, even its holder) since we judged it: judge it again.
    if (now.ino !== lock.stat.ino || now.ctimeMs !== lock.stat.ctimeMs) return true;
    await unlink(lockPath);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  } finally {
    await unlink(breaker).catch(() => undefined);
  }
  if (lock.kind === 'link' && provablyDead(lock.holder)) await removeDeadOwner(dir, lock.holder);
  return true;
}

/** The owner file of a dead process, once none of its locks is left (link count 1). */
async function removeDeadOwner(dir: string, holder: OwnerLabel): Promise<void> {
  const file = ownerFileOf(dir, holder);
  try {
    if ((await lstat(file)).nlink === 1) await unlink(file);
  } catch {
    // Gone already, or removed by the process that broke its last lock.
  }
}

type Lock =
  /** This version's: a hard link to the holder's owner file. */
  | { kind: 'link'; stat: Stats; holder: OwnerLabel }
  /** An older version's symbolic link or regular file: `<pid> <created ms> <nonce>`. */
  | { kind: 'legacy'; stat: Stats; pid: number; at: number };

function isStale(lock: Lock, staleMs: number): boolean {
  const now = Date.now();
  if (lock.kind === 'link') return provablyDead(lock.holder) || now - lock.stat.ctimeMs > staleMs;
  return (lock.pid > 0 && lock.pid !== process.pid && !alive(lock.pid)) || (lock.at > 0 && now - lock.at > staleMs);
}

/** Who holds the lock; 'gone' when it was released meanwhile, undefined when it cannot be read. */
async function inspectLock(lockPath: string): Promise<Lock | 'gone' | undefined> {
  try {
    const { stat, text } = await inspectFile(lockPath);
    const holder = parseOwner(text);
    if (holder) return { kind: 'link', stat, holder };
    // A regular file of a version before the symbolic link. Empty: its writer was between create
    // and write, or died there — aged by the file's mtime instead, or it would never go stale.
    return text ? { kind: 'legacy', stat, ...parseLegacy(text) } : { kind: 'legacy', stat, pid: 0, at: stat.mtimeMs };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'gone';
    if (code !== 'ELOOP') return undefined;
  }
  // ELOOP: a symbolic link, the lock of the version before this one.
  try {
    const stat = await lstat(lockPath);
    const text = await readlink(lockPath);
    const again = await lstat(lockPath);
    if (again.ino !== stat.ino || again.ctimeMs !== stat.ctimeMs) return 'gone';
    return { kind: 'legacy', stat, ...parseLegacy(text) };
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'gone' : undefined;
  }
}

function parseLegacy(text: string): { pid: number; at: number } {
  const [pid, at] = text.split(' ');
  return { pid: Number(pid), at: Number(at) };
}

/**
 * Writers of this process wait here for their turn at a lock, in order, so that at most one of
 * them at a time contends for the lock on disk. Present while some task has the turn.
 */
const turns = new Map<string, Array<() => void>>();

async function takeTurn(key: string, deadline: number, timedOut: () => StoreError): Promise<void> {
  const queue = turns.get(key);
  if (!queue) {
    turns.set(key, []);
    return;
  }
  await new Promise<void>((done, fail) => {
    const wake = (): void => {
      clearTimeout(timer);
      done();
    };
    const timer = setTimeout(() => {
      queue.splice(queue.indexOf(wake), 1);
      fail(timedOut());
    }, Math.max(0, deadline - Date.now()));
    queue.push(wake);
  });
}

function endTurn(key: string): void {
  const next = turns.get(key)?.shift();
  if (next) next();
  else turns.delete(key);
}

/** Readiness: this process can take locks in `dir` (a probe name linked and unlinked, no inode allocated). */
export async function probeLocking(dir: string): Promise<void> {
  for (let renewed = false; ; renewed = true) {
    const owner = await ownerOf(dir, STALE_MS);
    const probe = join(dir, `.probe-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await link(owner.file, probe);
      await unlink(probe);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || renewed) throw err;
      forgetOwner(dir, owner);
    }
  }
}
