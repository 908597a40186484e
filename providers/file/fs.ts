import * as fs from 'node:fs';
import { promisify } from 'node:util';

/**
 * The callback file-system calls behind promises. fs/promises costs more CPU per call (an async
 * wrapper per call, and a FileHandle to close and garbage-collect per open file), which is most of
 * the file store's own cost once each write is down to a few syscalls.
 */
export const open = promisify(fs.open);
export const close = promisify(fs.close);
export const read = promisify(fs.read);
export const write = promisify(fs.write);
export const fsync = promisify(fs.fsync);
export const fdatasync = promisify(fs.fdatasync);
export const fstat = promisify(fs.fstat);
export const rename = promisify(fs.rename);
export const link = promisify(fs.link);
export const unlink = promisify(fs.unlink);
export const symlink = promisify(fs.symlink);
export const readlink = promisify(fs.readlink);
export const readdir = promisify(fs.readdir);
export const readFile = promisify(fs.readFile);
export const stat = promisify(fs.stat);
export const lstat = promisify(fs.lstat);
