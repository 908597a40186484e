import * as fs from 'node:fs';
import { promisify } from 'node:util';

/**
 * The file store's file-system calls, behind promises.
 *
 * Those that wait for the disk — fsync, fdatasync, rename (a directory update), readdir,
 * readFile — go to libuv's thread pool (callback API: fs/promises costs more CPU per call, an
 * async wrapper per call and a FileHandle to close and garbage-collect per open file).
 *
 * The others — open, close, pread, pwrite, link, unlink, lstat, fstat, readlink of one small entry
 * file or lock name — run on the calling thread. On a local file system each is a few microseconds
 * of the kernel's time against its page and inode caches (a pwrite only fills the page cache; the
 * fdatasync that follows it is what waits for the disk, and it stays in the pool), while a hand-off
 * to the pool and back costs more than the call itself: a queued request, a pool thread woken, a
 * completion signalled back to the event loop. A rotation made about thirty such calls; on a loaded
 * 2-core host the hand-offs were a third of a worker's CPU per rotation (BENCHMARKS.md, "Orchestration
 * CPU"). The calls, their order and their results are the same either way, so what a crash leaves
 * behind is too; only a failing call now rejects with the synchronous API's error (same `code`).
 */
const inline =
  <A extends unknown[], R>(call: (...args: A) => R) =>
  (...args: A): Promise<R> => {
    try {
      return Promise.resolve(call(...args));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  };

export const open = inline((path: fs.PathLike, flags: fs.OpenMode, mode?: fs.Mode) => fs.openSync(path, flags, mode));
export const close = inline((fd: number) => fs.closeSync(fd));
export const read = inline((fd: number, buffer: Buffer, offset: number, length: number, position: number) => ({ bytesRead: fs.readSync(fd, buffer, offset, length, position), buffer }));
export const write = inline((fd: number, buffer: Buffer, offset?: number, length?: number, position?: number) => ({ bytesWritten: fs.writeSync(fd, buffer, offset, length, position), buffer }));
export const fstat = inline((fd: number) => fs.fstatSync(fd));
export const link = inline((existing: fs.PathLike, newPath: fs.PathLike) => fs.linkSync(existing, newPath));
export const unlink = inline((path: fs.PathLike) => fs.unlinkSync(path));
export const lstat = inline((path: fs.PathLike) => fs.lstatSync(path));
export const readlink = inline((path: fs.PathLike) => fs.readlinkSync(path, 'utf8'));
export const fsync = promisify(fs.fsync);
export const fdatasync = promisify(fs.fdatasync);
export const rename = promisify(fs.rename);
export const symlink = promisify(fs.symlink);
export const readdir = promisify(fs.readdir);
export const readFile = promisify(fs.readFile);
export const stat = promisify(fs.stat);
