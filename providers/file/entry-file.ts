import { StoreError } from '../store-error.ts';
import { decrypt, encrypt, isSealedV1, open as openV1, wrongKeyError } from './crypto.ts';

/**
 * Format 2 of an entry file: two slots overwritten in place, so a change to an existing entry is
 * one pwrite and one fdatasync into a file that stays where it is (no inode allocated or freed).
 *
 *   header   'ROTATOR-FS2' | format version u8 (2) | slot size u32 BE          16 bytes, never rewritten
 *   slots    slot 0 starts after the header, slot 1 at `slotSize`; the file is 2 × slotSize bytes
 *            (4096 by default: one file system block, each slot starting on a sector boundary)
 *   a slot   sealed length u32 BE | seq u64 BE | sealed bytes   (length 0: never written)
 *   sealed   AES-256-GCM of the entry's JSON (crypto.ts), AAD = 'ROTATOR-FS2 slot' 0x00 | seq u64 BE | path
 *
 * The slot with the highest seq that decrypts is the entry; a writer puts seq + 1 into the other
 * slot. A slot torn by a crash (or being written while a reader copies it) fails GCM, and the
 * other one, which no write touched since it was completed, is the entry. Binding seq in the AAD
 * means a slot's bytes are only valid with the seq they were written with.
 */
const MAGIC = Buffer.from('ROTATOR-FS2');
const FORMAT_VERSION = 2;
export const HEADER_BYTES = 16;
const SLOT_HEAD_BYTES = 12;
export const DEFAULT_SLOT_SIZE = 2048;
const AAD_PREFIX = Buffer.from('ROTATOR-FS2 slot\0');

export interface Slot {
  index: 0 | 1;
  seq: number;
  /** Empty when the slot was never written. */
  sealed: Buffer;
}

export type Decoded =
  | { format: 1; plain: Buffer }
  /** `span`: where in the file the slot's record (head and sealed bytes) lies. */
  | { format: 2; plain: Buffer; slotSize: number; seq: number; index: 0 | 1; span: [number, number]; settled: boolean }
  /** Format 2 and no slot decrypts; `error` is what to report if reading again does not help. */
  | { format: 2; unreadable: StoreError };

export function slotOffset(slotSize: number, index: 0 | 1): number {
  return index === 0 ? HEADER_BYTES : slotSize;
}

/** The largest slot record (head + sealed bytes) a file with this slot size holds, in either slot. */
function slotCapacity(slotSize: number): number {
  return slotSize - HEADER_BYTES;
}

export function fits(slotSize: number, record: Buffer): boolean {
  return record.length <= slotCapacity(slotSize);
}

/** A slot size that holds `record`: the default, or the next power of two that does. */
export function slotSizeFor(record: Buffer): number {
  let size = DEFAULT_SLOT_SIZE;
  while (!fits(size, record)) size *= 2;
  return size;
}

function aad(path: string, seq: number): Buffer {
  const seqBytes = Buffer.alloc(8);
  seqBytes.writeBigUInt64BE(BigInt(seq));
  return Buffer.concat([AAD_PREFIX, seqBytes, Buffer.from(path)]);
}

/** What a write puts at `slotOffset`: the slot's head and the sealed entry. */
export function sealSlot(key: Buffer, path: string, seq: number, plain: Buffer, known?: OpenedSlots): Buffer {
  const sealed = encrypt(key, aad(path, seq), plain);
  known?.remember(path, seq, sealed, plain);
  const head = Buffer.alloc(SLOT_HEAD_BYTES);
  head.writeUInt32BE(sealed.length, 0);
  head.writeBigUInt64BE(BigInt(seq), 4);
  return Buffer.concat([head, sealed]);
}

/** A whole new file: the header, `record` in slot 0, slot 1 never written. */
export function newEntryFile(slotSize: number, record: Buffer): Buffer {
  const file = Buffer.alloc(2 * slotSize);
  MAGIC.copy(file, 0);
  file.writeUInt8(FORMAT_VERSION, MAGIC.length);
  file.writeUInt32BE(slotSize, MAGIC.length + 1);
  record.copy(file, slotOffset(slotSize, 0));
  return file;
}

function slots(path: string, bytes: Buffer): { slotSize: number; slots: [Slot, Slot] } {
  const slotSize = bytes.length >= HEADER_BYTES ? bytes.readUInt32BE(MAGIC.length + 1) : 0;
  if (bytes.length < HEADER_BYTES || bytes.readUInt8(MAGIC.length) !== FORMAT_VERSION || slotSize < DEFAULT_SLOT_SIZE || bytes.length !== 2 * slotSize) {
    // The file is created whole and never resized in place: any other length is damage.
    throw new StoreError('store_corrupt', `file store entry for ${path} is damaged: unknown version or wrong length (${bytes.length} bytes)`);
  }
  const slot = (index: 0 | 1): Slot => {
    const at = slotOffset(slotSize, index);
    const length = bytes.readUInt32BE(at);
    const seq = Number(bytes.readBigUInt64BE(at + 4));
    // A length past the slot is a torn head: an empty slot, so the other one is the entry.
    const sealed = length > 0 && SLOT_HEAD_BYTES + length <= slotCapacity(slotSize) ? bytes.subarray(at + SLOT_HEAD_BYTES, at + SLOT_HEAD_BYTES + length) : Buffer.alloc(0);
    return { index, seq, sealed };
  };
  return { slotSize, slots: [slot(0), slot(1)] };
}

/**
 * The entry in `bytes` (a whole file of either format): the newest slot that decrypts. When it is
 * format 2 and no slot decrypts, it is a wrong key, a damaged file, or a reader that copied both
 * slots while two writes went by: `unreadable`, and the caller reads again before it reports the
 * error. `settled`: both slots decrypted, so the newest was the entry at some moment during the
 * copy (see store.ts's read for when a copy can be stale).
 */
export function decodeEntry(key: Buffer, path: string, bytes: Buffer, known?: OpenedSlots): Decoded {
  if (isSealedV1(bytes)) return { format: 1, plain: openV1(key, path, bytes) };
  if (!bytes.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new StoreError('store_corrupt', `file store entry for ${path} is not a Rotator encrypted file`);
  }
  const file = slots(path, bytes);
  const open = (s: Slot): Buffer | undefined => {
    if (s.sealed.length === 0) return undefined;
    const seen = known?.get(path, s.seq, s.sealed);
    if (seen) return seen;
    const plain = decrypt(key, aad(path, s.seq), s.sealed);
    if (plain) known?.remember(path, s.seq, s.sealed, plain);
    return plain;
  };
  const opened = file.slots.map((s) => ({ ...s, plain: open(s) }));
  const valid = opened.filter((s) => s.plain).sort((a, b) => b.seq - a.seq);
  const newest = valid[0];
  if (newest) {
    const start = slotOffset(file.slotSize, newest.index);
    const span: [number, number] = [start, start + SLOT_HEAD_BYTES + newest.sealed.length];
    return { format: 2, plain: newest.plain!, slotSize: file.slotSize, seq: newest.seq, index: newest.index, span, settled: valid.length === 2 };
  }
  const written = file.slots.some((s) => s.sealed.length > 0);
  const error = written ? wrongKeyError(path) : new StoreError('store_corrupt', `file store entry for ${path} is damaged: neither slot holds a version`);
  return { format: 2, unreadable: error };
}

/**
 * Slots this store object has opened or sealed, by path: bytes equal to a slot's sealed bytes,
 * with the same seq (and so the same AAD, the path being the key here), under the same key,
 * open to the same plaintext — GCM is deterministic in what it accepts. A rotation reads and
 * rewrites its entry six times within a second, and each read copies both slots: without this,
 * each read decrypted both again (two AES-GCM opens, a decipher object each). A slot whose bytes
 * differ in any way (another writer's version, a torn copy) is decrypted as before.
 *
 * Bounded (least recently used paths go first). It holds decrypted entries, as the process does
 * anyway for each read it serves; nothing here is written anywhere.
 */
export class OpenedSlots {
  readonly #byPath = new Map<string, Array<{ seq: number; sealed: Buffer; plain: Buffer }>>();
  readonly #capacity: number;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  get(path: string, seq: number, sealed: Buffer): Buffer | undefined {
    const known = this.#byPath.get(path);
    const hit = known?.find((k) => k.seq === seq && k.sealed.equals(sealed));
    if (!hit) return undefined;
    // Most recently used goes last.
    this.#byPath.delete(path);
    this.#byPath.set(path, known!);
    return hit.plain;
  }

  /**
   * Keeps copies of its own: `sealed` is a slice of a whole file's buffer, and both may be slices
   * of Node's shared 8 KB allocation pool, which a kept slice would keep alive whole.
   */
  remember(path: string, seq: number, sealed: Buffer, plain: Buffer): void {
    const known = this.#byPath.get(path) ?? [];
    // An entry has two slots: keep the two newest versions seen.
    const kept = known.filter((k) => k.seq !== seq).sort((a, b) => b.seq - a.seq).slice(0, 1);
    this.#byPath.delete(path);
    this.#byPath.set(path, [{ seq, sealed: ownCopy(sealed), plain: ownCopy(plain) }, ...kept]);
    if (this.#byPath.size > this.#capacity) this.#byPath.delete(this.#byPath.keys().next().value!);
  }

  forget(path: string): void {
    this.#byPath.delete(path);
  }
}

function ownCopy(bytes: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(copy);
  return copy;
}
