import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { StoreError } from '../store-error.ts';

const MAGIC = Buffer.from('ROTATOR-FS1');
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * AES-256-GCM with the secret path as additional authenticated data, so a file copied over another
 * subaccount's file fails to decrypt instead of handing out the wrong credential.
 */
export function seal(key: Buffer, aad: string, plaintext: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([MAGIC, iv, cipher.getAuthTag(), body]);
}

export function open(key: Buffer, aad: string, sealed: Buffer): Buffer {
  const head = MAGIC.length;
  if (sealed.length < head + IV_BYTES + TAG_BYTES || !sealed.subarray(0, head).equals(MAGIC)) {
    throw new StoreError('store_corrupt', `file store entry for ${aad} is not a Rotator encrypted file`);
  }
  const iv = sealed.subarray(head, head + IV_BYTES);
  const tag = sealed.subarray(head + IV_BYTES, head + IV_BYTES + TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(sealed.subarray(head + IV_BYTES + TAG_BYTES)), decipher.final()]);
  } catch {
    throw new StoreError('store_config', `cannot decrypt the file store entry for ${aad}: FILE_STORE_KEY is not the key it was written with, or the file was altered`);
  }
}
