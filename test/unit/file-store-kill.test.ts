import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { seal } from '../../providers/file/crypto.ts';
import type { SecretEntry } from '../../providers/secret-store.ts';
import { FileSecretStore } from '../../providers/file/store.ts';
import { Secret } from '../../src/domain/secret.ts';

const accountSid = 'AC' + '0'.repeat(32);
const module = (rel: string): string => new URL(rel, import.meta.url).pathname;

/**
 * Version v of the entry: rotation i stages SK<i> as pending (v = 2i - 1), then promotes it (v = 2i).
 * The credential of rotation i is always the same, so staging it again after a kill is a no-op.
 */
function versionOf(e: SecretEntry): number {
  if (e.pending) return 2 * Number(e.pending.rotationId!.slice(1)) - 1;
  return e.current ? 2 * Number(e.current.credential.apiKeySid.slice(2)) : 0;
}

/** A process writing versions from `from` + 1 on, printing each once its write has returned. */
const writerSource = (dir: string, key: Buffer, path: string, from: number): string => `
  const { FileSecretStore } = await import(${JSON.stringify(module('../../providers/file/store.ts'))});
  const { Secret } = await import(${JSON.stringify(module('../../src/domain/secret.ts'))});
  const store = new FileSecretStore({ dir: ${JSON.stringify(dir)}, key: Buffer.from(${JSON.stringify(key.toString('base64'))}, 'base64') });
  const path = ${JSON.stringify(path)};
  for (let i = Math.floor(${from} / 2) + 1; ; i++) {
    await store.putPending(path, 'r' + i, { accountSid: ${JSON.stringify(accountSid)}, apiKeySid: 'SK' + i, apiKeySecret: new Secret('secret-' + i) });
    process.stdout.write((2 * i - 1) + '\\n');
    await store.promotePending(path, 'r' + i, 'SK' + i);
    process.stdout.write(2 * i + '\\n');
  }`;

describe('file store: a writer process SIGKILLed at random moments', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-kill-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('leaves the entry at the last version it acknowledged or the one after, readable, every time', async () => {
    const key = randomBytes(32);
    const path = 'twilio/ACkill';
    const store = new FileSecretStore({ dir, key });
    // Start from a file of the format before the two slots: the first kills may land in its upgrade.
    const first = { current: { credential: { accountSid, apiKeySid: 'SK0', apiKeySecret: 'secret-0' } } };
    await writeFile(join(dir, `${encodeURIComponent(path)}.enc`), seal(key, path, Buffer.from(JSON.stringify(first))));
    let version = versionOf(await store.read(path));
    expect(version).toBe(0);

    for (let kill = 0; kill < 30; kill++) {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', writerSource(dir, key, path, version)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let acked = version;
      let out = '';
      let err = '';
      const exited = new Promise<NodeJS.Signals | null>((done) => child.on('exit', (_code, signal) => done(signal)));
      const firstAck = new Promise<void>((done) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const lines = out.split('\n');
          out = lines.pop()!;
          for (const line of lines) acked = Number(line);
          done();
        });
      });
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      // Past its start-up (and past breaking the lock the one before died holding), then at a random moment.
      const started = await Promise.race([firstAck.then(() => true), exited.then(() => false)]);
      expect(started, `writer ${kill} exited before its first write: ${err}`).toBe(true);
      await new Promise((r) => setTimeout(r, Math.random() * 30));
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');

      const seen = versionOf(await store.read(path));
      expect([acked, acked + 1], `after kill ${kill}`).toContain(seen);
      version = seen;
    }

    // The last writer's lock (if it died holding it) is broken at once, and the owner files the
    // killed processes left are gone once this process has locked here: only its own is left.
    // "At once" is the dead-holder rule: waiting the lock out by age (30 s) would exceed the
    // store's 10 s lock timeout and fail this write. (Not a bound on elapsed time: one was 1 s,
    // which an fsync on a busy disk can take by itself.)
    await store.putPending(path, 'final', { accountSid, apiKeySid: 'SKfinal', apiKeySecret: new Secret('final') });
    const names = await readdir(dir);
    expect(names.filter((n) => n.startsWith('.owner-'))).toEqual([expect.stringMatching(new RegExp(`^\\.owner-${process.pid}-`))]);
    expect(names.filter((n) => n.endsWith('.lock') || n.endsWith('.break'))).toEqual([]);
    // Temporary files come only with creating or upgrading a file: one kill at most can leave one.
    expect(names.filter((n) => n.endsWith('.tmp')).length).toBeLessThanOrEqual(1);
    // Thirty writer processes start one after another (each a node with tsx): on a busy machine
    // that alone took over two minutes.
  }, 300_000);
});
