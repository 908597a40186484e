import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type * as FileSystem from '../../providers/file/fs.ts';
import { FileSecretStore } from '../../providers/file/store.ts';
import { Secret } from '../../src/domain/secret.ts';

/**
 * A read() or pwrite() of 4 KB from the page cache takes microseconds, so a reader copying a slot
 * while a writer fills it is rare here — but the kernel can preempt either in the middle. When
 * `split` is on, the store's reads and writes go through in pieces with other tasks running in
 * between, so readers copy half-written slots, and read both slots across several writes, all the
 * time.
 */
const split = vi.hoisted(() => ({ on: false, tornWrites: 0 }));
vi.mock('../../providers/file/fs.ts', async (importOriginal) => {
  const real = await importOriginal<typeof FileSystem>();
  const pause = (): Promise<void> => new Promise((r) => setImmediate(r));
  // The store calls both with (fd, buffer, offset, length, position).
  return {
    ...real,
    read: async (fd: number, buf: Buffer, offset: number, length: number, position: number) => {
      if (!split.on) return real.read(fd, buf, offset, length, position);
      let done = 0;
      for (;;) {
        const { bytesRead } = await real.read(fd, buf, offset + done, Math.min(1024, length - done), position + done);
        done += bytesRead;
        if (bytesRead === 0 || done === length) return { bytesRead: done, buffer: buf };
        // Now and then a long stall, so that one read spans several writes.
        await (Math.random() < 0.05 ? new Promise((r) => setTimeout(r, 3)) : pause());
      }
    },
    write: async (fd: number, buf: Buffer, offset: number, length: number, position: number) => {
      if (!split.on || length < 64) return real.write(fd, buf, offset, length, position);
      split.tornWrites++;
      for (let done = 0; done < length; await pause()) done += (await real.write(fd, buf, offset + done, Math.min(32, length - done), position + done)).bytesWritten;
      return { bytesWritten: length, buffer: buf };
    },
  } as typeof real;
});

const cred = (sid: string) => ({ accountSid: 'AC' + '0'.repeat(32), apiKeySid: sid, apiKeySecret: new Secret(randomBytes(16).toString('hex')) });

describe('file store readers racing writers of the same entry', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-readers-'));
  });
  afterEach(async () => {
    split.on = false;
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * 500 writes to one entry while readers read it (2,000 reads at least): each write stages
   * version i as pending (another rotation's pending is replaced), so i only grows. Each reader has
   * its own store object, as another process would.
   */
  async function race(): Promise<number> {
    const key = randomBytes(32);
    const writer = new FileSecretStore({ dir, key });
    const path = 'twilio/ACrace';
    await writer.putPending(path, 'r0', cred('SK0'));
    const WRITES = 500;
    const MIN_READS = 2_000;
    let written = 0;
    let reads = 0;
    const writes = (async () => {
      for (let i = 1; i <= WRITES; i++) {
        await writer.putPending(path, `r${i}`, cred(`SK${i}`));
        written = i;
      }
    })();
    const reader = async (): Promise<void> => {
      const store = new FileSecretStore({ dir, key });
      let last = 0;
      while (written < WRITES || reads < MIN_READS) {
        // Never older than what it saw before, nor than the last write completed before it started.
        const floor = Math.max(last, written);
        const seen = Number((await store.read(path)).pending?.rotationId?.slice(1));
        reads++;
        expect(seen).toBeGreaterThanOrEqual(floor);
        last = seen;
      }
    };
    await Promise.all([writes, reader(), reader(), reader(), reader()]);
    expect((await writer.read(path)).pending?.rotationId).toBe(`r${WRITES}`);
    return reads;
  }

  it('never see an error, nor a version older than one they saw before', async () => {
    expect(await race()).toBeGreaterThanOrEqual(2_000);
  });

  it('the same with every read and write split in pieces: readers copy half-written slots all the time', async () => {
    split.on = true;
    expect(await race()).toBeGreaterThanOrEqual(2_000);
    expect(split.tornWrites).toBeGreaterThanOrEqual(500);
  });
});
