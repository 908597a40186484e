import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileSecretStore } from '../../providers/file/store.ts';
import { Secret } from '../../src/domain/secret.ts';

const cred = (sid: string) => ({ accountSid: 'AC' + '0'.repeat(32), apiKeySid: sid, apiKeySecret: new Secret(randomBytes(16).toString('hex')) });
const entryFile = (path: string): string => `${encodeURIComponent(path)}.enc`;

/** Polls until `cond`; the 60 s deadline is a guard against a hang, not a measure of speed. */
async function until(what: string, cond: () => boolean): Promise<void> {
  for (const started = Date.now(); !cond(); await new Promise((r) => setTimeout(r, 2))) {
    if (Date.now() - started > 60_000) throw new Error(`timed out waiting for ${what}`);
  }
}

// The directory is synced only when an entry file is created (or replaced whole): changes to an
// existing entry are written in place and sync the file alone.
describe('file store directory fsync shared between writers creating entries', () => {
  let dir: string;
  /** Each directory sync: the entries visible when it started, and how to complete (or fail) it. */
  let syncs: Array<{ seen: string[]; done: () => void; fail: (err: Error) => void }>;
  let store: FileSecretStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-dirsync-'));
    syncs = [];
    const syncDir = (d: string) => new Promise<void>((done, fail) => syncs.push({ seen: readdirSync(d), done, fail }));
    store = new FileSecretStore({ dir, key: randomBytes(32), syncDir });
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('a write resolves only after a sync that started after its rename; writers during a sync share the next one', async () => {
    const resolved: string[] = [];
    const put = (path: string) => store.putPending(path, 'r1', cred(`SK${path}`)).then(() => resolved.push(path));
    const a = put('a');
    await until('the first sync', () => syncs.length === 1);
    expect(syncs[0]!.seen).toContain(entryFile('a'));

    const bc = [put('b'), put('c')];
    await until('the renames of b and c', () => existsSync(join(dir, entryFile('b'))) && existsSync(join(dir, entryFile('c'))));
    await new Promise((r) => setTimeout(r, 50));
    // The running sync may have started before their renames: it does not cover them.
    expect(syncs).toHaveLength(1);
    expect(resolved).toEqual([]);

    syncs[0]!.done();
    await a;
    await until('the second sync', () => syncs.length === 2);
    expect(syncs[1]!.seen).toEqual(expect.arrayContaining([entryFile('b'), entryFile('c')]));
    await new Promise((r) => setTimeout(r, 20));
    expect(resolved).toEqual(['a']);

    syncs[1]!.done();
    await Promise.all(bc);
    expect(resolved.sort()).toEqual(['a', 'b', 'c']);
    expect(syncs).toHaveLength(2);
  });

  it('a change to an existing entry, emptying it included, is written in place: no directory sync, the file stays', async () => {
    const put = store.putPending('d', 'r1', cred('SKd'));
    await until('the sync', () => syncs.length === 1);
    syncs[0]!.done();
    await put;
    const ino = statSync(join(dir, entryFile('d'))).ino;

    // None of these waits for a directory sync: none would resolve, as nothing completes one.
    await store.promotePending('d', 'r1', 'SKd');
    await store.putPending('d', 'r2', cred('SKe'));
    await store.discardPending('d', 'r2');
    await store.restorePrevious('d', 'SKd');
    expect(syncs).toHaveLength(1);
    expect(await store.read('d')).toEqual({});
    // The emptied entry stays, holding an empty entry: no unlink, and it reads as a missing one does.
    expect(statSync(join(dir, entryFile('d'))).ino).toBe(ino);
  });

  it('a failed sync fails every write waiting on it, as a transient store error', async () => {
    const put = store.putPending('e', 'r1', cred('SKe'));
    await until('the sync', () => syncs.length === 1);
    syncs[0]!.fail(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
    await expect(put).rejects.toMatchObject({ code: 'store_unavailable' });
  });
});
