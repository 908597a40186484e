import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { SecretStore } from '../secret-store.ts';
import { StoreError } from '../store-error.ts';
import { FileSecretStore } from './store.ts';

export { FileSecretStore } from './store.ts';

export interface FileStoreConfig {
  dir: string;
  /** base64 of 32 bytes; when absent, read from (or generated once into) keyFile. */
  keyBase64?: string;
  keyFile: string;
  /** The operator named keyFile (FILE_STORE_KEY_FILE): never generate it (a volume not mounted must not mint a new key). */
  keyFileMustExist?: boolean;
}

export function createFileStore(opts: { dir: string; key: Buffer }): SecretStore {
  return new FileSecretStore(opts);
}

/** Resolve the key (FILE_STORE_KEY, else the key file, else generate it once, mode 0600) and build the store. */
export async function openFileStore(cfg: FileStoreConfig): Promise<SecretStore> {
  const key = cfg.keyBase64 ? decodeKey(cfg.keyBase64, 'FILE_STORE_KEY') : await loadOrCreateKey(cfg.keyFile, cfg.keyFileMustExist ?? false);
  return new FileSecretStore({ dir: cfg.dir, key });
}

/**
 * The key decrypts every stored secret: a key file that other users may read gives them all of
 * them, so it is refused (not fixed silently: the operator should know who may have read it).
 */
async function checkKeyFileMode(keyFile: string): Promise<void> {
  if (process.platform === 'win32') return;
  const mode = (await stat(keyFile)).mode & 0o777;
  if (mode & 0o077) {
    const octal = mode.toString(8).padStart(4, '0');
    throw new StoreError('store_config', `the file store key ${keyFile} is open to other users (mode ${octal}; the key decrypts every stored secret): run chmod 600 ${keyFile} (and consider the key exposed if anyone else could read it)`);
  }
}

function decodeKey(b64: string, source: string): Buffer {
  const key = Buffer.from(b64.trim(), 'base64');
  if (key.length !== 32) throw new StoreError('store_config', `${source} must be 32 bytes, base64-encoded (generate one with: openssl rand -base64 32)`);
  return key;
}

async function loadOrCreateKey(keyFile: string, mustExist: boolean): Promise<Buffer> {
  if (mustExist) {
    await stat(keyFile).catch((err: NodeJS.ErrnoException) => {
      throw new StoreError(
        'store_config',
        err.code === 'ENOENT'
          ? `FILE_STORE_KEY_FILE ${keyFile} does not exist: create it with (umask 077; openssl rand -base64 32 > ${keyFile}), or restore the key the secrets were written with`
          : `FILE_STORE_KEY_FILE ${keyFile} cannot be read (${err.code ?? err.message})`,
      );
    });
    return readKeyFile(keyFile);
  }
  await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 });
  try {
    // 'wx' makes the first process to get here the only one to generate it.
    const handle = await open(keyFile, 'wx', 0o600);
    try {
      await handle.writeFile(randomBytes(32).toString('base64') + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return readKeyFile(keyFile);
}

async function readKeyFile(keyFile: string): Promise<Buffer> {
  await checkKeyFileMode(keyFile);
  // A concurrent creator may not have written yet; retry briefly.
  for (let i = 0; ; i++) {
    const text = (await readFile(keyFile, 'utf8')).trim();
    if (text) return decodeKey(text, keyFile);
    if (i > 50) throw new StoreError('store_config', `key file ${keyFile} is empty`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
