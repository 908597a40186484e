import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { openSecretStore } from '../../src/stores.ts';
import { Secret } from '../../src/domain/secret.ts';

/** The file store's key: where it lives (FILE_STORE_KEY_FILE) and who may read it. */
describe('file store key file', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-key-'));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  const open = (env: Record<string, string> = {}) => {
    const cfg = loadConfig({ REDIS_URL: 'redis://127.0.0.1:1', DATA_DIR: join(dir, 'data'), ...env }, { requireTwilio: false });
    return openSecretStore(cfg.store);
  };
  const credential = { accountSid: `AC${'1'.repeat(32)}`, apiKeySid: `SK${'2'.repeat(32)}`, apiKeySecret: new Secret('not-a-real-secret') };

  it('generates the default key once, mode 0600, and reads it back', async () => {
    const store = await open();
    const keyFile = join(dir, 'data', 'file-store.key');
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    await store.close();
    await (await open()).close();
  });

  it('refuses a key file other users may read, naming the file and the chmod that fixes it', async () => {
    await (await open()).close();
    const keyFile = join(dir, 'data', 'file-store.key');
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      await chmod(keyFile, mode);
      await expect(open(), mode.toString(8)).rejects.toMatchObject({ code: 'store_config', message: expect.stringContaining(`${keyFile} is open to other users (mode 0${mode.toString(8)}`) });
      await expect(open()).rejects.toThrow(`chmod 600 ${keyFile}`);
    }
    await chmod(keyFile, 0o400);
    await (await open()).close();
  });

  it('reads the key from FILE_STORE_KEY_FILE, outside the data directory; never generates it there', async () => {
    const keyFile = join(dir, 'elsewhere.key');
    await expect(open({ FILE_STORE_KEY_FILE: keyFile })).rejects.toMatchObject({ code: 'store_config', message: expect.stringMatching(/FILE_STORE_KEY_FILE .*elsewhere\.key does not exist: create it with/) });
    await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    const store = await open({ FILE_STORE_KEY_FILE: keyFile, FILE_STORE_PATH: join(dir, 'secrets') });
    await store.putPending('twilio/x', '00000000-0000-7000-8000-000000000001', credential);
    await store.close();
    // Not in the data directory: a backup of .data alone cannot decrypt the secrets.
    await expect(stat(join(dir, 'data', 'file-store.key'))).rejects.toMatchObject({ code: 'ENOENT' });
    // The same key file reads them back; so does FILE_STORE_KEY with its content.
    const again = await open({ FILE_STORE_KEY_FILE: keyFile, FILE_STORE_PATH: join(dir, 'secrets') });
    expect((await again.read('twilio/x')).pending?.credential.apiKeySid).toBe(credential.apiKeySid);
    await again.close();
    const viaEnv = await open({ FILE_STORE_KEY: (await readFile(keyFile, 'utf8')).trim(), FILE_STORE_PATH: join(dir, 'secrets') });
    expect((await viaEnv.read('twilio/x')).pending?.credential.apiKeySid).toBe(credential.apiKeySid);
    await viaEnv.close();
    await chmod(keyFile, 0o644);
    await expect(open({ FILE_STORE_KEY_FILE: keyFile })).rejects.toThrow(`chmod 600 ${keyFile}`);
  });
});
