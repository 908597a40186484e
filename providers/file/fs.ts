import * as fs from 'node:fs';
import { promisify } from 'node:util';

/**
 * The file-system calls the file store makes, behind promises.
 *
 * The calls that wait for the disk — fsync, fdatasync, rename (and directory reads) — go to
 * libuv's thread pool. The ones that do not — open, pread, pwrite into the page cache, close, and
 * the lock's link, unlink and lstat — run on the calling thread: a thread-pool hand-off costs more
 * CPU (a wake-up of a pool thread and one of the event loop, across two threads) than the system
 * call itself, and a rotation makes about thirty of them.
 *
 * Each of those still settles only after the event loop has had a turn (setImmediate): a caller
 * retrying such calls in a loop — a reader waiting out a writer's lock in the same process —
 * must let timers and I/O run between attempts. A version that settled at once livelocked exactly
 * so (test/unit/file-store-progress.test.ts).
 *
 * Callback calls rather than fs/promises for the pool: an async wrapper and a FileHandle to close
 * and garbage-collect per open file were most of the store's own cost once a write was a few syscalls.
 */
function onThisThread<A extends unknown[], R>(call: (...args: A) => R): (...args: A) => Promise<R> {
  return (...args: A) =>
    new Promise<R>((resolve, reject) => {
      let result: R;
      try {
        result = call(...args);
      } catch (err) {
        setImmediate(reject, err);
        return;
      }
      setImmediate(resolve, result);
    });
}

export const open = onThisThread((path: fs.PathLike, flags: fs.OpenMode, mode?: fs.Mode): number => fs.openSync(path, flags, mode));
export const close = onThisThread((fd: number): void => fs.closeSync(fd));
export const read = onThisThread(<T extends NodeJS.ArrayBufferView>(fd: number, buffer: T, offset: number, length: number, position: number) => ({
  bytesRead: fs.readSync(fd, buffer, offset, length, position),
  buffer,
}));
export const write = onThisThread(<T extends NodeJS.ArrayBufferView>(fd: number, buffer: T, offset?: number, length?: number, position?: number) => ({
  bytesWritten: fs.writeSync(fd, buffer, offset, length, position),
  buffer,
}));
export const link = onThisThread((existing: fs.PathLike, newPath: fs.PathLike): void => fs.linkSync(existing, newPath));
export const unlink = onThisThread((path: fs.PathLike): void => fs.unlinkSync(path));
export const lstat = onThisThread((path: fs.PathLike): fs.Stats => fs.lstatSync(path));
export const fstat = onThisThread((fd: number): fs.Stats => fs.fstatSync(fd));

export const fsync = promisify(fs.fsync);
export const fdatasync = promisify(fs.fdatasync);
export const rename = promisify(fs.rename);
export const symlink = promisify(fs.symlink);
export const readlink = promisify(fs.readlink);
export const readdir = promisify(fs.readdir);
export const readFile = promisify(fs.readFile);
export const stat = promisify(fs.stat);
