import { mkdir, open, readFile } from 'node:fs/promises';
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
}

export function createFileStore(opts: { dir: string; key: Buffer }): SecretStore {
  return new FileSecretStore(opts);
}

/** Resolve the key (FILE_STORE_KEY, else the key file, else generate it once, mode 0600) and build the store. */
export async function openFileStore(cfg: FileStoreConfig): Promise<SecretStore> {
  const key = cfg.keyBase64 ? decodeKey(cfg.keyBase64, 'FILE_STORE_KEY') : await loadOrCreateKey(cfg.keyFile);
  return new FileSecretStore({ dir: cfg.dir, key });
}

function decodeKey(b64: string, source: string): Buffer {
  const key = Buffer.from(b64.trim(), 'base64');
  if (key.length !== 32) throw new StoreError('store_config', `${source} must be 32 bytes, base64-encoded (generate one with: openssl rand -base64 32)`);
  return key;
}

async function loadOrCreateKey(keyFile: string): Promise<Buffer> {
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
  // A concurrent creator may not have written yet; retry briefly.
  for (let i = 0; ; i++) {
    const text = (await readFile(keyFile, 'utf8')).trim();
    if (text) return decodeKey(text, keyFile);
    if (i > 50) throw new StoreError('store_config', `key file ${keyFile} is empty`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
