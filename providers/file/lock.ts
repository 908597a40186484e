import { randomBytes } from 'node:crypto';
import { StoreError } from '../store-error.ts';
import { fileStoreError } from './errors.ts';
import { readFile, readlink, stat, symlink, unlink } from './fs.ts';

const STALE_MS = 30_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * An exclusive lock around one entry's read-modify-write, so two writers — threads of one worker
 * or two processes on one host — never interleave. The lock is a symbolic link whose target is
 * `<pid> <created ms> <random>`: symlink() creates it with its content in one atomic syscall (no
 * open/write/close, and never seen empty), and a holder can tell its own lock from a successor's.
 * A lock left by a process that died (SIGKILL) is broken when its pid is gone or it is older than
 * STALE_MS. Versions before the symlink wrote a regular file with the same content: the two
 * exclude each other (O_EXCL and symlink() both fail on any existing name), and this version breaks
 * either kind when stale (an older one reads a symlink as missing, so never breaks one).
 */
export async function withFileLock<T>(lockPath: string, dir: string, fn: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const started = Date.now();
  const nonce = randomBytes(8).toString('hex');
  let delay = 2;
  let content: string;
  for (;;) {
    content = `${process.pid} ${Date.now()} ${nonce}`;
    try {
      await symlink(content, lockPath);
      break;
    } catch (err) {
      // A directory that refuses new files (EPERM, EACCES…) is the store's error, classified like any other.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fileStoreError(err, 'lock', dir);
      await breakIfStale(lockPath);
      if (Date.now() - started > timeoutMs) {
        throw new StoreError('store_unavailable', `file store lock ${lockPath} is held by another writer for over ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
      delay = Math.min(delay * 2, 50);
    }
  }
  try {
    return await fn();
  } finally {
    await release(lockPath, content);
  }
}

/**
 * Remove our lock. When the directory refuses it (EPERM: the immutable attribute was set while we
 * held the lock), keep trying in the background: otherwise every writer of this entry would wait
 * until the lock goes stale. Only our own lock is removed (the link still has our content), and
 * only before anyone else may consider it stale — nobody breaks a live process's fresh lock.
 */
async function release(lockPath: string, content: string): Promise<void> {
  try {
    await unlink(lockPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    const createdAt = Number(content.split(' ')[1]);
    const retry = (): void => {
      const t = setTimeout(() => {
        if (Date.now() - createdAt > STALE_MS - 5_000) return;
        readlink(lockPath).then(
          (text) => (text === content ? unlink(lockPath).catch(retry) : undefined),
          () => undefined,
        );
      }, 200);
      t.unref();
    };
    retry();
  }
}

async function breakIfStale(lockPath: string): Promise<void> {
  const lock = await holder(lockPath);
  if (!lock) return;
  if ((lock.pid > 0 && lock.pid !== process.pid && !alive(lock.pid)) || (lock.at > 0 && Date.now() - lock.at > STALE_MS)) {
    await unlink(lockPath).catch(() => undefined);
  }
}

/** Who holds the lock and since when; undefined when it is gone (released meanwhile). */
async function holder(lockPath: string): Promise<{ pid: number; at: number } | undefined> {
  try {
    return parse(await readlink(lockPath));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') return undefined;
  }
  // EINVAL: not a symlink, so a lock file of an older version.
  try {
    const text = await readFile(lockPath, 'utf8');
    // Empty: its writer was between create and write, or died there — aged by the file's mtime
    // instead, or it would never go stale.
    return text ? parse(text) : { pid: 0, at: (await stat(lockPath)).mtimeMs };
  } catch {
    return undefined;
  }
}

function parse(text: string): { pid: number; at: number } {
  const [pid, at] = text.split(' ');
  return { pid: Number(pid), at: Number(at) };
}
