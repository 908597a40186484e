import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fileStoreError } from '../../providers/file/errors.ts';
import { FileSecretStore } from '../../providers/file/store.ts';
import { withFileLock } from '../../providers/file/lock.ts';
import { StoreError } from '../../providers/store-error.ts';
import { isTransient } from '../../src/domain/errors.ts';
import { Secret } from '../../src/domain/secret.ts';

function run(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const p = spawn(cmd, args);
    const out = { stdout: '', stderr: '' };
    p.stdout.on('data', (d: Buffer) => (out.stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out.stderr += d.toString()));
    p.on('error', fail);
    p.on('close', () => done(out));
  });
}

const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: failed`), { code });

describe('file store error classification', () => {
  it('EACCES and EROFS are permanent permission errors; EPERM and the rest are transient', () => {
    for (const code of ['EACCES', 'EROFS']) {
      const e = fileStoreError(errno(code), 'write', '/srv/secrets');
      expect([e.code, isTransient(e)], code).toEqual(['store_permission', false]);
      expect(e.message).toMatch(/owner or mode/);
    }
    for (const code of ['EPERM', 'ENOSPC', 'EIO']) {
      const e = fileStoreError(errno(code), 'lock', '/srv/secrets');
      expect([e.code, isTransient(e)], code).toEqual(['store_unavailable', true]);
    }
    expect(fileStoreError(errno('EPERM'), 'write', '/srv/secrets').message).toMatch(/immutable/);
    // A path through a file is a configuration mistake: start-up stops at once rather than retrying.
    const notDir = fileStoreError(errno('ENOTDIR'), 'write', '/etc/hostname/secrets');
    expect([notDir.code, isTransient(notDir)]).toEqual(['store_config', false]);
  });

  // chattr +i needs root on a file system with attributes (ext4 here); elsewhere there is nothing to test.
  const canChattr = process.getuid?.() === 0 && spawnSync('chattr', ['--help']).error === undefined;
  let dir: string | undefined;
  afterEach(async () => {
    if (!dir) return;
    spawnSync('chattr', ['-i', join(dir, 'secrets')]);
    await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it.skipIf(!canChattr)('a store directory made immutable refuses writes with a transient error, and reads still work', async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-filestore-'));
    const store = new FileSecretStore({ dir: join(dir, 'secrets'), key: randomBytes(32) });
    const path = 'twilio/ACx';
    const cred = (sid: string) => ({ accountSid: 'AC' + '0'.repeat(32), apiKeySid: sid, apiKeySecret: new Secret(randomBytes(16).toString('hex')) });
    await store.putPending(path, 'r1', cred('SK1'));
    await store.promotePending(path, 'r1', 'SK1');
    const entryFile = join(dir, 'secrets', `${encodeURIComponent(path)}.enc`);
    const before = await readFile(entryFile);
    const r = spawnSync('chattr', ['+i', join(dir, 'secrets')]);
    if (r.status !== 0) return; // a file system without attributes (tmpfs): nothing to test
    // The lock (a new name in the directory) cannot be created: before the fix this escaped as a
    // raw EPERM (code "internal", permanent), which failed and undid every rotation that wrote
    // during the stretch. The entry file itself is not immutable and is written in place, so the
    // lock is what denies the write: the file must be untouched.
    const err = await store.putPending(path, 'r2', cred('SK2')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('store_unavailable');
    expect(isTransient(err)).toBe(true);
    expect((await readFile(entryFile)).equals(before)).toBe(true);
    expect((await store.readCurrent(path))?.apiKeySid).toBe('SK1');
    spawnSync('chattr', ['-i', join(dir, 'secrets')]);
    await store.putPending(path, 'r2', cred('SK2'));
    expect((await store.read(path)).pending?.credential.apiKeySid).toBe('SK2');
  });

  it.skipIf(!canChattr)('a lock held while the directory became immutable does not block writers once the stretch is over', async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-filestore-'));
    const secrets = join(dir, 'secrets');
    spawnSync('mkdir', ['-p', secrets]);
    const lock = join(secrets, 'x.enc.lock');
    // The holder cannot remove its lock file while the attribute is set…
    await withFileLock(lock, secrets, async () => {
      if (spawnSync('chattr', ['+i', secrets]).status !== 0) throw new Error('chattr failed');
    });
    spawnSync('chattr', ['-i', secrets]);
    // …and before the fix every writer then waited for it to go stale (30 s), timing out at 10 s.
    // Another process: the holder's process removes its lock in the background once it can.
    // spawn, not spawnSync: the holder's process must keep running meanwhile.
    // The writers' timeout is the bound: 10 s is far below the 30 s stale window a writer used to
    // wait out, and far above what removing a leftover takes on a slow or busy machine (the
    // bounds were 2 s of elapsed time under a 3 s timeout).
    const child = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `
      const { withFileLock } = await import(${JSON.stringify(new URL('../../providers/file/lock.ts', import.meta.url).pathname)});
      await withFileLock(${JSON.stringify(lock)}, ${JSON.stringify(secrets)}, async () => undefined, { timeoutMs: 10_000 });
      console.log('locked');`]);
    expect(child.stderr).toBe('');
    expect(child.stdout.trim()).toBe('locked');
    // This process: the next writer here removes the leftover at once.
    await withFileLock(lock, secrets, async () => undefined, { timeoutMs: 10_000, staleMs: 3_600_000 });
  });
});

