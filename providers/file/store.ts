import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { SecretEntry, SecretStore, StoredVersion } from '../secret-store.ts';
import { StoreError } from '../store-error.ts';
import { credentialFromObject, plainCredential, type TwilioApiKeyCredential } from '../../src/domain/secret.ts';
import { open as openSealed, seal } from './crypto.ts';
import { withFileLock } from './lock.ts';
import { fileStoreError } from './errors.ts';

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
}

/**
 * The embedded default store: one AES-256-GCM file per secret path holding all three stages, so a
 * stage transition is one atomic rename (temp file, fsync, rename, fsync dir). Readers never take
 * the lock: rename guarantees they see the old file or the new one, never a torn one.
 */
export class FileSecretStore implements SecretStore {
  readonly kind = 'file' as const;
  readonly #dir: string;
  readonly #key: Buffer;
  #dirReady: Promise<unknown> | undefined;

  constructor(opts: FileStoreOptions) {
    if (opts.key.length !== 32) throw new StoreError('store_config', 'FILE_STORE_KEY must be 32 bytes, base64-encoded (openssl rand -base64 32)');
    this.#dir = opts.dir;
    this.#key = opts.key;
  }

  #file(path: string): string {
    return join(this.#dir, `${encodeURIComponent(path)}.enc`);
  }

  async #load(path: string): Promise<PlainEntry> {
    let sealed: Buffer;
    try {
      sealed = await readFile(this.#file(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw fileStoreError(err, 'read', this.#dir);
    }
    const plain = openSealed(this.#key, path, sealed);
    return JSON.parse(plain.toString('utf8')) as PlainEntry;
  }

  async #save(path: string, entry: PlainEntry): Promise<void> {
    const target = this.#file(path);
    const tmp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const empty = !entry.current && !entry.pending && !entry.previous;
    try {
      if (empty) {
        await unlink(target).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
      } else {
        const handle = await open(tmp, 'wx', 0o600);
        try {
          await handle.writeFile(seal(this.#key, path, Buffer.from(JSON.stringify(entry))));
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(tmp, target);
      }
      const dirHandle = await open(this.#dir, 'r');
      try {
        await dirHandle.sync();
      } finally {
        await dirHandle.close();
      }
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
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
      const handle = await open(probe, 'w', 0o600);
      await handle.close();
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
