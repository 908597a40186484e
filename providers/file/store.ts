import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { SecretEntry, SecretStore, StoredVersion } from '../secret-store.ts';
import { StoreError } from '../store-error.ts';
import { credentialFromObject, plainCredential, type TwilioApiKeyCredential } from '../../src/domain/secret.ts';
import { open as openSealed, seal } from './crypto.ts';
import { withFileLock } from './lock.ts';
import { fileStoreError } from './errors.ts';
import { fsyncDir, groupCommit } from './dir-sync.ts';
import { close, fsync, open, read, rename, unlink, write } from './fs.ts';

/** An entry is a few hundred bytes: a buffer this size reads one in a single read(), without fstat. */
const READ_SIZE = 2048;

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
  /** fsync of the directory after a rename or unlink; replaced by tests to see when it runs. */
  syncDir?: (dir: string) => Promise<void>;
}

/**
 * The embedded default store: one AES-256-GCM file per secret path holding all three stages, so a
 * stage transition is one atomic rename (temp file, fsync, rename, fsync dir). Readers never take
 * the lock: rename guarantees they see the old file or the new one, never a torn one. Writes
 * share the directory fsync (group commit): each still returns only once its rename is durable.
 */
export class FileSecretStore implements SecretStore {
  readonly kind = 'file' as const;
  readonly #dir: string;
  readonly #key: Buffer;
  readonly #syncDir: () => Promise<void>;
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

  async #load(path: string): Promise<PlainEntry> {
    let sealed: Buffer;
    try {
      sealed = await readWhole(this.#file(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw fileStoreError(err, 'read', this.#dir);
    }
    const plain = openSealed(this.#key, path, sealed);
    return JSON.parse(plain.toString('utf8')) as PlainEntry;
  }

  async #save(path: string, entry: PlainEntry): Promise<void> {
    const target = this.#file(path);
    let tmp: string | undefined;
    try {
      if (!entry.current && !entry.pending && !entry.previous) {
        await unlink(target).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
      } else {
        tmp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
        await writeDurably(tmp, seal(this.#key, path, Buffer.from(JSON.stringify(entry))));
        await rename(tmp, target);
      }
      await this.#syncDir();
    } catch (err) {
      if (tmp) await unlink(tmp).catch(() => undefined);
      throw fileStoreError(err, 'write', this.#dir);
    }
  }

  async #update(path: string, change: (entry: PlainEntry) => PlainEntry | undefined): Promise<void> {
    // Once per process (and again if it failed): not a mkdir syscall on every write.
    this.#dirReady ??= mkdir(this.#dir, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
      this.#dirReady = undefined;
      throw fileStoreError(err, 'write', this.#dir);
    });
    await this.#dirReady;
    await withFileLock(`${this.#file(path)}.lock`, this.#dir, async () => {
      const entry = await this.#load(path);
      const next = change(entry);
      if (next) await this.#save(path, next);
    });
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
      if (entry.current?.credential.apiKeySid === apiKeySid) return undefined;
      const pending = entry.pending;
      if (!pending || pending.rotationId !== rotationId || pending.credential.apiKeySid !== apiKeySid) {
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
      if (entry.current?.credential.apiKeySid !== newKeySid) return undefined;
      const { current: _new, previous, ...rest } = entry;
      return { ...rest, ...(previous ? { current: previous } : {}) };
    });
  }

  async dropPrevious(path: string, apiKeySid: string): Promise<void> {
    await this.#update(path, (entry) => {
      if (entry.previous?.credential.apiKeySid !== apiKeySid) return undefined;
      const { previous: _old, ...rest } = entry;
      return rest;
    });
  }

  async check(): Promise<void> {
    try {
      await mkdir(this.#dir, { recursive: true, mode: 0o700 });
      const probe = join(this.#dir, `.probe-${process.pid}`);
      await close(await open(probe, 'w', 0o600));
      await unlink(probe);
    } catch (err) {
      const e = fileStoreError(err, 'write', this.#dir);
      throw new StoreError(e.code as 'store_permission' | 'store_unavailable', `the file store directory ${this.#dir} is not writable: ${e.message}; set FILE_STORE_PATH to a writable directory`, err);
    }
  }

  async close(): Promise<void> {}
}

function toVersion(v: PlainVersion): StoredVersion {
  return { credential: credentialFromObject(v.credential), ...(v.rotationId ? { rotationId: v.rotationId } : {}) };
}

function sameCredential(a: Record<string, string>, b: Record<string, string>): boolean {
  return a.accountSid === b.accountSid && a.apiKeySid === b.apiKeySid && a.apiKeySecret === b.apiKeySecret;
}

/** The whole file. A short read of a regular file is its end, so the usual entry takes one read(). */
async function readWhole(file: string): Promise<Buffer> {
  const fd = await open(file, 'r');
  try {
    let buf = Buffer.allocUnsafe(READ_SIZE);
    let len = 0;
    for (;;) {
      len += (await read(fd, buf, len, buf.length - len, len)).bytesRead;
      if (len < buf.length) return buf.subarray(0, len);
      buf = Buffer.concat([buf], buf.length * 2);
    }
  } finally {
    await close(fd);
  }
}

/** Create `file` with `data`, on disk before this returns (the rename that follows publishes it). */
async function writeDurably(file: string, data: Buffer): Promise<void> {
  const fd = await open(file, 'wx', 0o600);
  try {
    for (let done = 0; done < data.length; ) done += (await write(fd, data, done, data.length - done, done)).bytesWritten;
    await fsync(fd);
  } finally {
    await close(fd);
  }
}
