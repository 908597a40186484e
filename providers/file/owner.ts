import { randomBytes } from 'node:crypto';
import { constants, readlinkSync, unlinkSync, type Stats } from 'node:fs';
import { hostname } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { close, fstat, lstat, open, read, readdir, unlink, write } from './fs.ts';

/**
 * The owner file: each process that writes to a store directory creates, once, a file
 * `.owner-<pid>-<nonce>` there, and every entry lock it takes is a hard link to that file
 * (lock.ts). Taking and releasing a lock then allocates and frees no inode: the owner file keeps
 * the inode alive between locks.
 *
 * Its content, `<pid> - <nonce> <namespace>`, is what a lock says about its holder. Versions before
 * the hard-link lock parse a lock as `<pid> <created ms> …`: to them `-` is no time, so they judge
 * this lock by its pid alone and never break a live process's lock by age. `<namespace>` (host name
 * and pid namespace) says whether the pid can be checked from here: a process in another container
 * sharing the directory has pids this one cannot see.
 *
 * The file is removed when the process exits normally. One left by a killed process is removed by
 * whoever breaks its last lock (lock.ts), or by the next process to create its own owner file here
 * (a sweep), once it holds no lock (its link count is 1) and its process is provably dead or it has
 * not been touched for the stale window.
 */
export interface Owner {
  file: string;
  ino: number;
}

export interface OwnerLabel {
  pid: number;
  nonce: string;
  namespace: string;
}

export const OWNER_PREFIX = '.owner-';

let ownNamespace: string | undefined;
function namespace(): string {
  if (ownNamespace === undefined) {
    let pidNs = '';
    try {
      pidNs = readlinkSync('/proc/self/ns/pid');
    } catch {
      // Not Linux: the host name alone.
    }
    ownNamespace = `${hostname()}/${pidNs}`.replaceAll(' ', '_');
  }
  return ownNamespace;
}

export function ownerContent(pid: number, nonce: string): string {
  return `${pid} - ${nonce} ${namespace()}`;
}

/** The holder named by a lock of this version, or undefined for another kind of content. */
export function parseOwner(text: string): OwnerLabel | undefined {
  const [pid, dash, nonce, ns] = text.split(' ');
  // The nonce names the owner file: only hex, so a lock's content cannot point outside the directory.
  if (dash !== '-' || !/^[0-9a-f]+$/.test(nonce ?? '') || !/^\d+$/.test(pid ?? '')) return undefined;
  return { pid: Number(pid), nonce: nonce!, namespace: ns ?? '' };
}

export function ownerFileOf(dir: string, label: OwnerLabel): string {
  return join(dir, `${OWNER_PREFIX}${label.pid}-${label.nonce}`);
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Dead for sure: a pid of our namespace that is not ours and not running. */
export function provablyDead(label: OwnerLabel): boolean {
  return label.namespace === namespace() && label.pid !== process.pid && !alive(label.pid);
}

/**
 * The inode behind `file` (not following a symbolic link) and its first bytes, read through one
 * descriptor so both belong to the same file. ELOOP when `file` is a symbolic link.
 */
export async function inspectFile(file: string): Promise<{ stat: Stats; text: string }> {
  const fd = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const buf = Buffer.alloc(512);
    const [stat, { bytesRead }] = await Promise.all([fstat(fd), read(fd, buf, 0, buf.length, 0)]);
    return { stat, text: buf.toString('utf8', 0, bytesRead) };
  } finally {
    await close(fd);
  }
}

/** Per directory: this process's owner file, once created. */
const owners = new Map<string, { created: Promise<Owner>; owner?: Owner }>();
const toRemoveAtExit = new Set<string>();
let exitHook = false;

/** This process's owner file in `dir`, created on first use (and again after forgetOwner). */
export function ownerOf(path: string, staleMs: number): Promise<Owner> {
  // One per directory however it is spelt, so a lock this process left is always recognised as its own.
  const dir = resolve(path);
  const known = owners.get(dir);
  if (known) return known.created;
  const entry: { created: Promise<Owner>; owner?: Owner } = {
    created: createOwner(dir, staleMs).then(
      (owner) => (entry.owner = owner),
      (err: unknown) => {
        if (owners.get(dir) === entry) owners.delete(dir);
        throw err;
      },
    ),
  };
  owners.set(dir, entry);
  return entry.created;
}

/** `owner`'s file is gone (removed by hand, or by a sweep that misjudged it): the next ownerOf creates another. */
export function forgetOwner(path: string, owner: Owner): void {
  const dir = resolve(path);
  if (owners.get(dir)?.owner === owner) owners.delete(dir);
  toRemoveAtExit.delete(owner.file);
}

async function createOwner(dir: string, staleMs: number): Promise<Owner> {
  const nonce = randomBytes(6).toString('hex');
  const file = ownerFileOf(dir, { pid: process.pid, nonce, namespace: namespace() });
  const fd = await open(file, 'wx', 0o600);
  let ino: number;
  try {
    await write(fd, Buffer.from(ownerContent(process.pid, nonce)));
    ino = (await fstat(fd)).ino;
  } catch (err) {
    await unlink(file).catch(() => undefined);
    throw err;
  } finally {
    await close(fd);
  }
  if (!exitHook) process.once('exit', removeOwnersAtExit);
  exitHook = true;
  toRemoveAtExit.add(file);
  await sweep(dir, file, staleMs);
  return { file, ino };
}

function removeOwnersAtExit(): void {
  for (const file of toRemoveAtExit) {
    try {
      unlinkSync(file);
    } catch {
      // Best effort: a file left here is swept by the next process.
    }
  }
}

/** A temp file of a write that creates or regrows an entry (store.ts): `<entry>.<pid>.<8 hex>.tmp`. */
const TEMP_FILE = /\.\d+\.[0-9a-f]{8}\.tmp$/;
/** A temp file this old was left by a writer that died: creating an entry takes milliseconds. */
const TEMP_ABANDONED_MS = 10 * 60_000;

/**
 * Remove the owner files of other processes that hold no lock and are dead or long idle, and temp
 * files that writers killed mid-creation left behind (nothing else removes them). Best effort.
 */
async function sweep(dir: string, self: string, staleMs: number): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  const abandoned = names.filter((n) => TEMP_FILE.test(n));
  await Promise.all(
    abandoned.map(async (name) => {
      const file = join(dir, name);
      try {
        if (Date.now() - (await lstat(file)).mtimeMs > TEMP_ABANDONED_MS) await unlink(file);
      } catch {
        // Gone meanwhile (renamed into place or removed by its writer).
      }
    }),
  );
  const others = names.filter((n) => n.startsWith(OWNER_PREFIX) && n !== basename(self));
  await Promise.all(
    others.map(async (name) => {
      const file = join(dir, name);
      try {
        const { stat, text } = await inspectFile(file);
        const label = parseOwner(text);
        if (stat.nlink === 1 && ((label && provablyDead(label)) || Date.now() - stat.ctimeMs > staleMs)) await unlink(file);
      } catch {
        // Gone meanwhile, or not ours to judge.
      }
    }),
  );
}
