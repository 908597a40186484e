import { randomBytes } from 'node:crypto';
import { open, readFile, unlink } from 'node:fs/promises';
import { StoreError } from '../store-error.ts';
import { fileStoreError } from './errors.ts';

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
 * An exclusive lock file (O_EXCL create) around one entry's read-modify-write, so two writers —
 * threads of one worker or two processes on one host — never interleave. A lock left by a process
 * that died (SIGKILL) is broken when its pid is gone or it is older than STALE_MS. The lock file
 * holds `<pid> <created ms> <random>`, so a holder can tell its own lock from a successor's.
 */
export async function withFileLock<T>(lockPath: string, dir: string, fn: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const started = Date.now();
  let delay = 2;
  let content = '';
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx', 0o600);
      content = `${process.pid} ${Date.now()} ${randomBytes(8).toString('hex')}`;
      await handle.writeFile(content);
      await handle.close();
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
 * until the lock goes stale. Only our own lock is removed (the file still has our content), and
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
        readFile(lockPath, 'utf8').then(
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
  let text: string;
  try {
    text = await readFile(lockPath, 'utf8');
  } catch {
    return;
  }
  const [pidText, atText] = text.split(' ');
  const pid = Number(pidText);
  const at = Number(atText);
  // An empty file is a lock being written right now; give it the stale window.
  if (!text) return;
  if ((pid > 0 && pid !== process.pid && !alive(pid)) || (at > 0 && Date.now() - at > STALE_MS)) {
    await unlink(lockPath).catch(() => undefined);
  }
}
