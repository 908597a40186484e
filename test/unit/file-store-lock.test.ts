import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstat, mkdtemp, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { withFileLock } from '../../providers/file/lock.ts';
import { StoreError } from '../../providers/store-error.ts';

const deadPid = (): number => spawnSync(process.execPath, ['-e', '']).pid;
const lockContent = (pid: number, at: number): string => `${pid} ${at} ${randomBytes(8).toString('hex')}`;

describe('file store lock', () => {
  let dir: string;
  let lock: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-lock-'));
    lock = join(dir, 'x.enc.lock');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  /** The lock is free within `ms`: a writer gets it. */
  const acquiredWithin = (ms: number) => withFileLock(lock, dir, async () => 'ran', ms);

  it('is a symlink naming its holder while held, and gone after', async () => {
    const seen = await withFileLock(lock, dir, async () => [(await lstat(lock)).isSymbolicLink(), await readlink(lock)] as const);
    expect(seen[0]).toBe(true);
    expect(seen[1]).toMatch(new RegExp(`^${process.pid} \\d+ [0-9a-f]{16}$`));
    await expect(lstat(lock)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a second writer waits for the holder and runs after it', async () => {
    const order: string[] = [];
    let release!: () => void;
    const first = withFileLock(lock, dir, async () => {
      order.push('first in');
      await new Promise<void>((r) => (release = r));
      order.push('first out');
    });
    while (!release) await new Promise((r) => setTimeout(r, 2));
    const second = withFileLock(lock, dir, async () => order.push('second'));
    await new Promise((r) => setTimeout(r, 100));
    expect(order).toEqual(['first in']);
    release();
    await Promise.all([first, second]);
    expect(order).toEqual(['first in', 'first out', 'second']);
  });

  it('a lock held by a live process past the timeout is store_unavailable, and is left alone', async () => {
    const content = lockContent(process.ppid, Date.now());
    await symlink(content, lock);
    const err = await acquiredWithin(150).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('store_unavailable');
    expect(await readlink(lock)).toBe(content);
  });

  it('breaks a lock of a dead process, and one of a live process older than the stale window', async () => {
    await symlink(lockContent(deadPid(), Date.now()), lock);
    expect(await acquiredWithin(1_000)).toBe('ran');
    await symlink(lockContent(process.ppid, Date.now() - 60_000), lock);
    expect(await acquiredWithin(1_000)).toBe('ran');
  });

  it('recognises a regular-file lock of an older version: honoured while live, broken when stale', async () => {
    await writeFile(lock, lockContent(process.ppid, Date.now()));
    await expect(acquiredWithin(150)).rejects.toMatchObject({ code: 'store_unavailable' });
    await writeFile(lock, lockContent(deadPid(), Date.now()));
    expect(await acquiredWithin(1_000)).toBe('ran');
    await writeFile(lock, lockContent(process.ppid, Date.now() - 60_000));
    expect(await acquiredWithin(1_000)).toBe('ran');
  });

  it('an empty regular-file lock (its writer died between create and write) goes stale by its mtime', async () => {
    await writeFile(lock, '');
    await expect(acquiredWithin(150)).rejects.toMatchObject({ code: 'store_unavailable' });
    const old = new Date(Date.now() - 60_000);
    await utimes(lock, old, old);
    expect(await acquiredWithin(1_000)).toBe('ran');
  });
});
