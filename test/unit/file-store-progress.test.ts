import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileSecretStore } from '../../providers/file/store.ts';
import { Secret } from '../../src/domain/secret.ts';

const cred = (sid: string) => ({ accountSid: 'AC' + '0'.repeat(32), apiKeySid: sid, apiKeySecret: new Secret(randomBytes(16).toString('hex')) });

/**
 * The store's open, pread, pwrite, close, link, unlink and lstat run on the calling thread
 * (providers/file/fs.ts). Had they settled at once, a task looping on them would never give the
 * event loop a turn: timers would not fire and a writer waiting for its fdatasync (in the thread
 * pool) would never be resumed. An earlier version did exactly that, and these loops spun forever.
 */
describe('file store: a task looping on reads in the same process', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-progress-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lets a timer fire', async () => {
    const store = new FileSecretStore({ dir, key: randomBytes(32) });
    await store.putPending('twilio/ACtimer', 'r0', cred('SK0'));
    let fired = false;
    setTimeout(() => (fired = true), 1);
    let reads = 0;
    while (!fired) {
      await store.read('twilio/ACtimer');
      reads++;
    }
    expect(reads).toBeGreaterThan(0);
  });

  it('lets a writer of the same entry finish while readers spin, each write seen in order', async () => {
    const key = randomBytes(32);
    const writer = new FileSecretStore({ dir, key });
    const path = 'twilio/ACspin';
    await writer.putPending(path, 'r0', cred('SK0'));
    const WRITES = 50;
    let written = 0;
    const writes = (async () => {
      for (let i = 1; i <= WRITES; i++) {
        await writer.putPending(path, `r${i}`, cred(`SK${i}`));
        written = i;
      }
    })();
    const reader = async (store: FileSecretStore): Promise<void> => {
      while (written < WRITES) {
        const floor = written;
        expect(Number((await store.read(path)).pending?.rotationId?.slice(1))).toBeGreaterThanOrEqual(floor);
      }
    };
    // One reader shares the writer's store object (and its cache of opened slots), one has its own.
    await Promise.all([writes, reader(writer), reader(new FileSecretStore({ dir, key }))]);
    expect((await writer.read(path)).pending?.rotationId).toBe(`r${WRITES}`);
  });
});
