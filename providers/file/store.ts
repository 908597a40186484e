import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { SecretEntry, SecretStore, StoredVersion } from '../secret-store.ts';
import { StoreError } from '../store-error.ts';
import { credentialFromObject, plainCredential, plainCredentialId, type TwilioApiKeyCredential } from '../../src/domain/secret.ts';
import { decodeEntry, fits, newEntryFile, OpenedSlots, sealSlot, slotOffset, slotSizeFor, type Decoded } from './entry-file.ts';
import { probeLocking, withFileLock } from './lock.ts';
import { fileStoreError } from './errors.ts';
import { fsyncDir, groupCommit } from './dir-sync.ts';
import { close, fdatasync, fsync, open, read, rename, unlink, write } from './fs.ts';

/** Entry files are 4 KB: a buffer this size reads one in a single read(), without fstat. */
const READ_SIZE = 8192;
/**
 * A read finds no slot it can decrypt when the key is wrong — or when both slots were rewritten
 * while it copied them; and its copy of the slot it chose can be stale (below). It reads again,
 * up to this many times in all, 0, 1, 2, 4, 8… ms apart, before it reports the error.
 */
const READ_ATTEMPTS = 8;
/** Entries whose slots a store object remembers opening (entry-file.ts's OpenedSlots): more than a worker rotates at once. */
const OPENED_ENTRIES = 1024;

interface PlainVersion {
  credential: Record<string, string>;
  rotationId?: string;
}
interface PlainEntry {
  current?: PlainVersion;
  pending?: PlainVersion;
  previous?: PlainVersion;
}

export interface FileStoreOptions {
  /** Directory holding one encrypted file per secret path. */
  dir: string;
  /** 32-byte AES-256 key. */
  key: Buffer;
  /** fsync of the directory after a rename (creating an entry); replaced by tests to see when it runs. */
  syncDir?: (dir: string) => Promise<void>;
}

/**
 * The embedded default store: one file per secret path, `<dir>/<encodeURIComponent(path)>.enc`,
 * holding all three stages, AES-256-GCM sealed with the path (and a sequence number) as AAD.
 *
 * The file has two slots (entry-file.ts). A change is a read-modify-write under the entry's lock
 * (lock.ts) that seals the new entry into the slot not holding the newest version, in place: open,
 * one pread, one pwrite, fdatasync, close. No file is created, renamed or removed, and the lock is
 * a hard link to a file that stays, so a write allocates and frees no inode: on ext4 the allocator
 * skips every inode freed in the last minutes, and searching past them was most of the store's
 * CPU when each write replaced its file. A crash leaves the newest complete version in the other
 * slot; a torn slot fails GCM.
 *
 * Readers never take the lock: they read the whole file (one read()) and take the newest slot that
 * decrypts. A slot being written fails GCM and the other one, which no write touches until this
 * one is complete, is the entry. A read stalled long enough to span two writes can find one slot
 * torn and its copy of the other stale: it then reads the slot it chose again (#load); and when no
 * slot decrypts it reads again before it reports a wrong key.
 *
 * Creating an entry, upgrading a format 1 file (one sealed blob) on its first write, and
 * rewriting one whose entry outgrew its slots go the old way: temp file, fsync, rename, fsync of
 * the directory, shared by concurrent creators (group commit), each returning only once its rename
 * is durable. An entry left with no stage stays, holding an empty entry, which reads as {} like a
 * missing file.
 */
export class FileSecretStore implements SecretStore {
  readonly kind = 'file' as const;
  readonly #dir: string;
  readonly #key: Buffer;
  readonly #syncDir: () => Promise<void>;
  readonly #opened = new OpenedSlots(OPENED_ENTRIES);
  #dirReady: Promise<unknown> | undefined;

  constructor(opts: FileStoreOptions) {
    if (opts.key.length !== 32) throw new StoreError('store_config', 'FILE_STORE_KEY must be 32 bytes, base64-encoded (openssl rand -base64 32)');
    this.#dir = opts.dir;
    this.#key = opts.key;
    const syncDir = opts.syncDir ?? fsyncDir;
    this.#syncDir = groupCommit(() => syncDir(opts.dir));
  }

  #file(path: string): string {
    return join(this.#dir, `${encodeURIComponent(path)}.enc`);
  }

  /**
   * The entry, as it was at some moment during the call. One read() copies both slots, but not in
   * one instant: a reader stalled between them can copy slot A holding version s, then — after
   * s + 1 went into B and s + 2 into A, while s + 3 is going into B — copy B half-written, and
   * would return s although s + 1 was complete before it started. So when only one slot decrypts,
   * it reads that slot again: unchanged, no write has touched it since the copy, so s + 2 has not
   * been written, and s + 1 was not complete before the read began (B's copy would hold it, or s + 3).
   * Changed: read again. When both decrypt, the newer one, n, is fine as it is: n + 1 would have
   * gone into the other slot, whose copy, made after the read began, still holds n − 1 — the usual
   * case, which costs no second read.
   */
  async #load(path: string): Promise<PlainEntry> {
    const file = this.#file(path);
    let failure: StoreError | undefined;
    for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, attempt === 1 ? 0 : Math.min(2 ** (attempt - 2), 8)));
      let fd: number;
      try {
        fd = await open(file, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
        throw fileStoreError(err, 'read', this.#dir);
      }
      try {
        const bytes = await readAll(fd);
        const got = decodeEntry(this.#key, path, bytes, this.#opened);
        if ('unreadable' in got) {
          failure = got.unreadable;
          continue;
        }
        if (got.format === 2 && !got.settled && !(await unchanged(fd, bytes, got.span))) {
          failure = new StoreError('store_unavailable', `the file store entry for ${path} changed during each of ${READ_ATTEMPTS} reads`);
          continue;
        }
        return parseEntry(got.plain);
      } catch (err) {
        throw fileStoreError(err, 'read', this.#dir);
      } finally {
        await close(fd);
      }
    }
    throw failure!;
  }

  async #update(path: string, change: (entry: PlainEntry) => PlainEntry | undefined): Promise<void> {
    // Once per process (and again if it failed): not a mkdir syscall on every write.
    this.#dirReady ??= mkdir(this.#dir, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
      this.#dirReady = undefined;
      throw fileStoreError(err, 'write', this.#dir);
    });
    await this.#dirReady;
    await withFileLock(`${this.#file(path)}.lock`, this.#dir, () => this.#change(path, change));
  }

  /** Under the entry's lock: read it, and write what `change` makes of it, if anything. */
  async #change(path: string, change: (entry: PlainEntry) => PlainEntry | undefined): Promise<void> {
    let fd: number;
    try {
      fd = await open(this.#file(path), 'r+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fileStoreError(err, 'write', this.#dir);
      const next = change({});
      if (next && !isEmpty(next)) await this.#create(path, 1, next);
      return;
    }
    try {
      const got: Decoded = decodeEntry(this.#key, path, await readAll(fd), this.#opened);
      // Under the lock no write goes by: no slot decrypting is a wrong key or a damaged file.
      if ('unreadable' in got) throw got.unreadable;
      const next = change(parseEntry(got.plain));
      if (!next) return;
      if (got.format === 1) return await this.#create(path, 1, next);
      const record = sealSlot(this.#key, path, got.seq + 1, Buffer.from(JSON.stringify(next)), this.#opened);
      if (!fits(got.slotSize, record)) return await this.#create(path, got.seq + 1, next);
      await writeAll(fd, record, slotOffset(got.slotSize, got.index === 0 ? 1 : 0));
      await fdatasync(fd);
    } catch (err) {
      throw fileStoreError(err, 'write', this.#dir);
    } finally {
      await close(fd);
    }
  }

  /** A whole new file for `path` with `entry` as version `seq`, replacing any file there by rename. */
  async #create(path: string, seq: number, entry: PlainEntry): Promise<void> {
    const target = this.#file(path);
    const record = sealSlot(this.#key, path, seq, Buffer.from(JSON.stringify(entry)), this.#opened);
    const tmp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await writeDurably(tmp, newEntryFile(slotSizeFor(record), record));
      await rename(tmp, target);
      await this.#syncDir();
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw fileStoreError(err, 'write', this.#dir);
    }
  }

  async readCurrent(path: string): Promise<TwilioApiKeyCredential | undefined> {
    return (await this.read(path)).current?.credential;
  }

  async read(path: string): Promise<SecretEntry> {
    const entry = await this.#load(path);
    const out: SecretEntry = {};
    for (const stage of ['current', 'pending', 'previous'] as const) {
      const v = entry[stage];
      if (v) out[stage] = toVersion(v);
    }
    return out;
  }

  async putPending(path: string, rotationId: string, credential: TwilioApiKeyCredential): Promise<void> {
    const plain = plainCredential(credential);
    await this.#update(path, (entry) => {
      if (entry.pending?.rotationId === rotationId) {
        if (sameCredential(entry.pending.credential, plain)) return undefined;
        throw new StoreError('store_conflict', `rotation ${rotationId} already staged a different pending credential at ${path}`);
      }
      return { ...entry, pending: { credential: plain, rotationId } };
    });
  }

  async promotePending(path: string, rotationId: string, apiKeySid: string): Promise<void> {
    await this.#update(path, (entry) => {
      if (plainCredentialId(entry.current?.credential) === apiKeySid) return undefined;
      const pending = entry.pending;
      if (!pending || pending.rotationId !== rotationId || plainCredentialId(pending.credential) !== apiKeySid) {
        throw new StoreError('store_state', `no pending credential ${apiKeySid} of rotation ${rotationId} at ${path} to promote`);
      }
      return { current: pending, ...(entry.current ? { previous: entry.current } : {}) };
    });
  }

  async discardPending(path: string, rotationId: string): Promise<void> {
    await this.#update(path, (entry) => {
      if (entry.pending?.rotationId !== rotationId) return undefined;
      const { pending: _dropped, ...rest } = entry;
      return rest;
    });
  }

  async restorePrevious(path: string, newKeySid: string): Promise<void> {
    await this.#update(path, (entry) => {
      if (plainCredentialId(entry.current?.credential) !== newKeySid) return undefined;
      const { current: _new, previous, ...rest } = entry;
      return { ...rest, ...(previous ? { current: previous } : {}) };
    });
  }

  async dropPrevious(path: string, apiKeySid: string): Promise<void> {
    await this.#update(path, (entry) => {
      if (plainCredentialId(entry.previous?.credential) !== apiKeySid) return undefined;
      const { previous: _old, ...rest } = entry;
      return rest;
    });
  }

  async check(): Promise<void> {
    try {
      await mkdir(this.#dir, { recursive: true, mode: 0o700 });
      // What a write needs: a new name in the directory, as a lock takes (and no inode churn per probe).
      await probeLocking(this.#dir);
    } catch (err) {
      const e = fileStoreError(err, 'write', this.#dir);
      throw new StoreError(e.code as 'store_permission' | 'store_unavailable' | 'store_config', `the file store directory ${this.#dir} is not writable: ${e.message}; set FILE_STORE_PATH to a writable directory`, err);
    }
  }

  async close(): Promise<void> {}
}

function toVersion(v: PlainVersion): StoredVersion {
  return { credential: credentialFromObject(v.credential), ...(v.rotationId ? { rotationId: v.rotationId } : {}) };
}

function sameCredential(a: Record<string, string>, b: Record<string, string>): boolean {
  return a.accountSid === b.accountSid && a.apiKeySid === b.apiKeySid && a.apiKeySecret === b.apiKeySecret && a.authToken === b.authToken;
}

function parseEntry(plain: Buffer): PlainEntry {
  return JSON.parse(plain.toString('utf8')) as PlainEntry;
}

function isEmpty(entry: PlainEntry): boolean {
  return !entry.current && !entry.pending && !entry.previous;
}

/** The whole file from `fd`. A short read of a regular file is its end, so the usual entry takes one read(). */
async function readAll(fd: number): Promise<Buffer> {
  let buf = Buffer.allocUnsafe(READ_SIZE);
  let len = 0;
  for (;;) {
    len += (await read(fd, buf, len, buf.length - len, len)).bytesRead;
    if (len < buf.length) return buf.subarray(0, len);
    buf = Buffer.concat([buf], buf.length * 2);
  }
}

/** Whether the bytes at `span` are still those in `copy`. */
async function unchanged(fd: number, copy: Buffer, [start, end]: [number, number]): Promise<boolean> {
  const again = Buffer.allocUnsafe(end - start);
  const { bytesRead } = await read(fd, again, 0, again.length, start);
  return bytesRead === again.length && again.equals(copy.subarray(start, end));
}

async function writeAll(fd: number, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length; ) done += (await write(fd, data, done, data.length - done, position + done)).bytesWritten;
}

/** Create `file` with `data`, on disk before this returns (the rename that follows publishes it). */
async function writeDurably(file: string, data: Buffer): Promise<void> {
  const fd = await open(file, 'wx', 0o600);
  try {
    await writeAll(fd, data, 0);
    await fsync(fd);
  } finally {
    await close(fd);
  }
}
