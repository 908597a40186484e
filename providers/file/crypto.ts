import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { StoreError } from '../store-error.ts';

const MAGIC = Buffer.from('ROTATOR-FS1');
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** What sealing adds to a plaintext: the IV and the authentication tag. */
export const SEAL_OVERHEAD = IV_BYTES + TAG_BYTES;

/**
 * AES-256-GCM with `aad` as additional authenticated data: `iv | tag | ciphertext`. The callers
 * bind what must not be swapped (the secret path, a slot's sequence number), so bytes copied from
 * another subaccount's file, or replayed under another sequence number, fail to decrypt instead of
 * handing out the wrong credential.
 */
export function encrypt(key: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]);
}

/** The plaintext, or undefined when `sealed` does not authenticate (another key, altered or torn bytes). */
export function decrypt(key: Buffer, aad: Buffer, sealed: Buffer): Buffer | undefined {
  if (sealed.length < SEAL_OVERHEAD) return undefined;
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, IV_BYTES));
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(IV_BYTES, SEAL_OVERHEAD));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(SEAL_OVERHEAD)), decipher.final()]);
  } catch {
    return undefined;
  }
}

export function wrongKeyError(path: string): StoreError {
  return new StoreError('store_config', `cannot decrypt the file store entry for ${path}: FILE_STORE_KEY is not the key it was written with, or the file was altered`);
}

/**
 * Format 1 (before the two-slot files): the whole file is `ROTATOR-FS1 | iv | tag | ciphertext`,
 * with the secret path as AAD. Still read, and rewritten as format 2 by the next write; `seal` is
 * kept so tests can write such a file.
 */
export function seal(key: Buffer, aad: string, plaintext: Buffer): Buffer {
  return Buffer.concat([MAGIC, encrypt(key, Buffer.from(aad), plaintext)]);
}

export function isSealedV1(bytes: Buffer): boolean {
  return bytes.subarray(0, MAGIC.length).equals(MAGIC);
}

export function open(key: Buffer, aad: string, sealed: Buffer): Buffer {
  if (sealed.length < MAGIC.length + SEAL_OVERHEAD || !isSealedV1(sealed)) {
    throw new StoreError('store_corrupt', `file store entry for ${aad} is not a Rotator encrypted file`);
  }
  const plain = decrypt(key, Buffer.from(aad), sealed.subarray(MAGIC.length));
  if (!plain) throw wrongKeyError(aad);
  return plain;
}
