import { randomBytes } from 'node:crypto';
import { copyFile, lstat, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { seal } from '../../providers/file/crypto.ts';
import { FileSecretStore } from '../../providers/file/store.ts';
import { Secret } from '../../src/domain/secret.ts';

/**
 * The on-disk format these tests pin (entry-file.ts): a 16-byte header ('ROTATOR-FS2', version,
 * slot size), slot 0 right after it, slot 1 at the slot size (2048); a slot is sealed length u32,
 * seq u64, sealed bytes.
 */
const SLOT = [16, 2048] as const;
const slotSeq = (file: Buffer, i: 0 | 1): number => Number(file.readBigUInt64BE(SLOT[i] + 4));

const accountSid = 'AC' + '0'.repeat(32);
const cred = (sid: string, secret = randomBytes(16).toString('hex')) => ({ accountSid, apiKeySid: sid, apiKeySecret: new Secret(secret) });

describe('file store entry files: two slots written in place', () => {
  let dir: string;
  const key = randomBytes(32);
  let store: FileSecretStore;
  const fileOf = (path: string): string => join(dir, `${encodeURIComponent(path)}.enc`);
  const current = async (path: string) => (await store.read(path)).current?.credential.apiKeySid;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-slots-'));
    store = new FileSecretStore({ dir, key });
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  /** Every name in the directory and its inode. */
  async function inodes(): Promise<Map<string, number>> {
    const names = await readdir(dir);
    return new Map(await Promise.all(names.map(async (n) => [n, (await lstat(join(dir, n))).ino] as const)));
  }

  it('changes to existing entries create, replace and remove no file: the directory keeps its inodes throughout', async () => {
    const paths = ['twilio/AC1', 'twilio/AC2', 'twilio/AC3'];
    const keys = new Map(paths.map((p) => [p, 'SK0']));
    for (const p of paths) {
      await store.putPending(p, 'seed', cred('SK0'));
      await store.promotePending(p, 'seed', 'SK0');
    }
    // The entries and this process's owner file exist now; from here on no inode may come or go.
    const before = await inodes();
    const known = new Set(before.values());
    // Anything a write creates on the way (a temp file, a lock with its own inode) shows up here.
    const strangers = new Set<string>();
    let writing = true;
    const watch = (async () => {
      while (writing) {
        for (const name of await readdir(dir)) {
          const ino = await lstat(join(dir, name)).then((s) => s.ino, () => undefined);
          if (ino !== undefined && !known.has(ino)) strangers.add(name);
        }
      }
    })();
    for (let i = 1; i <= 40; i++) {
      const p = paths[i % paths.length]!;
      const old = keys.get(p)!;
      const sid = `SK${i}`;
      await store.putPending(p, `r${i}`, cred(sid));
      await store.promotePending(p, `r${i}`, sid);
      await store.dropPrevious(p, old);
      keys.set(p, sid);
    }
    // Emptied (a bootstrap rolled back) and filled again: still in place.
    await store.putPending('twilio/AC1', 'rb', cred('SKrb'));
    await store.discardPending('twilio/AC1', 'rb');
    writing = false;
    await watch;
    expect([...strangers]).toEqual([]);
    expect(await inodes()).toEqual(before);
    for (const p of paths) expect(await current(p)).toBe(keys.get(p));
  });

  it('an entry left with no stage stays in place, holding an empty entry, and reads as {}', async () => {
    await store.putPending('p', 'r1', cred('SK1'));
    await store.promotePending('p', 'r1', 'SK1');
    const ino = (await lstat(fileOf('p'))).ino;
    await store.restorePrevious('p', 'SK1');
    expect(await store.read('p')).toEqual({});
    expect((await lstat(fileOf('p'))).ino).toBe(ino);
    await store.putPending('p', 'r2', cred('SK2'));
    expect((await store.read('p')).pending?.credential.apiKeySid).toBe('SK2');
  });

  it('alternates slots with increasing sequence numbers, and never grows the file', async () => {
    await store.putPending('p', 'r1', cred('SK1'));
    let file = await readFile(fileOf('p'));
    expect(file.subarray(0, 11).toString()).toBe('ROTATOR-FS2');
    expect(file.length).toBe(4096);
    expect([slotSeq(file, 0), file.readUInt32BE(SLOT[1])]).toEqual([1, 0]);
    await store.promotePending('p', 'r1', 'SK1');
    file = await readFile(fileOf('p'));
    expect([slotSeq(file, 0), slotSeq(file, 1)]).toEqual([1, 2]);
    await store.putPending('p', 'r2', cred('SK2'));
    file = await readFile(fileOf('p'));
    expect([slotSeq(file, 0), slotSeq(file, 1)]).toEqual([3, 2]);
    expect(file.length).toBe(4096);
  });

  it('a torn newest slot: reads return the version before it, and the next write goes into the torn slot', async () => {
    await store.putPending('p', 'r1', cred('SK1')); // seq 1, slot 0
    await store.promotePending('p', 'r1', 'SK1'); // seq 2, slot 1
    await store.putPending('p', 'r2', cred('SK2')); // seq 3, slot 0: current SK1, pending SK2
    const intact = (await readFile(fileOf('p'))).subarray(SLOT[1], 4096);
    // A crash in the middle of writing seq 3: part of slot 0 is garbage.
    const fh = await open(fileOf('p'), 'r+');
    await fh.write(randomBytes(64), 0, 64, SLOT[0] + 12 + 100);
    await fh.close();

    expect(await store.read('p')).toMatchObject({ current: { credential: { apiKeySid: 'SK1' } } });
    expect((await store.read('p')).pending).toBeUndefined();

    await store.putPending('p', 'r3', cred('SK3'));
    const file = await readFile(fileOf('p'));
    // seq 3 again (one after the newest valid), into the torn slot; the valid one untouched.
    expect(slotSeq(file, 0)).toBe(3);
    expect(file.subarray(SLOT[1], 4096).equals(intact)).toBe(true);
    expect(await store.read('p')).toMatchObject({ current: { credential: { apiKeySid: 'SK1' } }, pending: { rotationId: 'r3' } });
  });

  it('a slot whose head is torn (a length past its end) counts as empty', async () => {
    await store.putPending('p', 'r1', cred('SK1'));
    await store.promotePending('p', 'r1', 'SK1');
    const fh = await open(fileOf('p'), 'r+');
    await fh.write(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4, SLOT[1]);
    await fh.close();
    expect(await store.read('p')).toMatchObject({ pending: { rotationId: 'r1' } });
    await store.promotePending('p', 'r1', 'SK1');
    expect(await current('p')).toBe('SK1');
  });

  it('a slot is bound to its sequence number and its path', async () => {
    await store.putPending('p', 'r1', cred('SK1')); // seq 1 in slot 0
    await store.promotePending('p', 'r1', 'SK1'); // seq 2 in slot 1
    // Give the older slot a higher seq: were seq not authenticated, the older version would win.
    const fh = await open(fileOf('p'), 'r+');
    const seq = Buffer.alloc(8);
    seq.writeBigUInt64BE(9n);
    await fh.write(seq, 0, 8, SLOT[0] + 4);
    await fh.close();
    expect(await current('p')).toBe('SK1');
    expect((await store.read('p')).pending).toBeUndefined();

    // Another subaccount's file copied over this one decrypts nowhere: the key error, as before.
    await store.putPending('q', 'r1', cred('SKq'));
    await copyFile(fileOf('q'), fileOf('p'));
    await expect(store.read('p')).rejects.toMatchObject({ code: 'store_config', message: expect.stringMatching(/FILE_STORE_KEY is not the key it was written with/) });
  });

  it('a wrong key is store_config saying so, for reads and for writes', async () => {
    await store.putPending('p', 'r1', cred('SK1'));
    await store.promotePending('p', 'r1', 'SK1');
    const other = new FileSecretStore({ dir, key: randomBytes(32) });
    const wrongKey = { code: 'store_config', message: expect.stringMatching(/FILE_STORE_KEY is not the key it was written with/) };
    await expect(other.read('p')).rejects.toMatchObject(wrongKey);
    await expect(other.putPending('p', 'r2', cred('SK2'))).rejects.toMatchObject(wrongKey);
    expect(await current('p')).toBe('SK1');
  });

  it('a file that is not a Rotator file, or is cut short, is store_corrupt', async () => {
    await writeFile(fileOf('junk'), 'hello');
    await expect(store.read('junk')).rejects.toMatchObject({ code: 'store_corrupt' });
    await store.putPending('p', 'r1', cred('SK1'));
    const file = await readFile(fileOf('p'));
    await writeFile(fileOf('p'), file.subarray(0, 3000));
    await expect(store.read('p')).rejects.toMatchObject({ code: 'store_corrupt' });
  });

  it('a format 1 file (the whole file one sealed blob) reads, and its first write rewrites it as format 2', async () => {
    const entry = { current: { credential: { accountSid, apiKeySid: 'SKold', apiKeySecret: 'old-secret' } }, previous: { credential: { accountSid, apiKeySid: 'SKolder', apiKeySecret: 'older-secret' } } };
    // What the versions before the two slots wrote (store.ts then: seal(key, path, JSON)).
    await writeFile(fileOf('p'), seal(key, 'p', Buffer.from(JSON.stringify(entry))), { mode: 0o600 });
    const read = await store.read('p');
    expect(read.current?.credential.apiKeySid).toBe('SKold');
    expect(read.current?.credential.apiKeySecret.reveal()).toBe('old-secret');
    expect(read.previous?.credential.apiKeySid).toBe('SKolder');
    await expect(new FileSecretStore({ dir, key: randomBytes(32) }).read('p')).rejects.toMatchObject({ code: 'store_config' });

    await store.putPending('p', 'r1', cred('SKnew'));
    const file = await readFile(fileOf('p'));
    expect(file.subarray(0, 11).toString()).toBe('ROTATOR-FS2');
    expect(await store.read('p')).toMatchObject({ current: { credential: { apiKeySid: 'SKold' } }, previous: { credential: { apiKeySid: 'SKolder' } }, pending: { rotationId: 'r1' } });
    // From then on, in place.
    const ino = (await lstat(fileOf('p'))).ino;
    await store.promotePending('p', 'r1', 'SKnew');
    expect((await lstat(fileOf('p'))).ino).toBe(ino);
    expect(await current('p')).toBe('SKnew');
  });

  it('an entry that outgrows its slots is rewritten once with bigger ones, then written in place again', async () => {
    await store.putPending('p', 'r1', cred('SK1'));
    await store.promotePending('p', 'r1', 'SK1');
    const big = 'x'.repeat(3_000);
    await store.putPending('p', 'r2', cred('SK2', big));
    const file = await readFile(fileOf('p'));
    expect(file.length).toBeGreaterThan(4096);
    expect(file.readUInt32BE(12) * 2).toBe(file.length);
    expect((await store.read('p')).pending?.credential.apiKeySecret.reveal()).toBe(big);
    const ino = (await lstat(fileOf('p'))).ino;
    await store.promotePending('p', 'r2', 'SK2');
    expect((await lstat(fileOf('p'))).ino).toBe(ino);
    expect(await store.read('p')).toMatchObject({ current: { credential: { apiKeySid: 'SK2' } }, previous: { credential: { apiKeySid: 'SK1' } } });
  });
});
