import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConnection, type CliEnv } from '../../src/cli/rotator/connection.ts';
import { CliError, EXIT, exitForStatus } from '../../src/cli/rotator/exit-codes.ts';

/** Where the CLI takes its URL and token from, and which files it refuses (in process: no API needed). */
describe('rotator CLI connection settings', () => {
  let dir: string;
  let env: CliEnv;
  const noStdin = (): string => {
    throw new Error('standard input was not asked for');
  };
  const refusal = (f: () => unknown): CliError => {
    try {
      f();
    } catch (err) {
      if (err instanceof CliError) return err;
      throw err;
    }
    throw new Error('not refused');
  };
  const configAt = async (body: unknown, mode: number): Promise<string> => {
    const file = join(dir, '.config', 'rotator', 'config.json');
    await mkdir(join(dir, '.config', 'rotator'), { recursive: true });
    await writeFile(file, typeof body === 'string' ? body : JSON.stringify(body));
    await chmod(file, mode);
    return file;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-conn-'));
    env = { HOME: dir, XDG_CONFIG_HOME: join(dir, '.config') };
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('takes each setting from the flag, else the environment, else the config file, else the default URL', async () => {
    expect(resolveConnection({}, env, noStdin, { needToken: false })).toEqual({ url: 'http://127.0.0.1:8080', token: '', tokenFrom: '' });
    const file = await configAt({ url: 'https://from-file.example:8443/', token: 'file-token' }, 0o600);
    expect(resolveConnection({}, env, noStdin, { needToken: true })).toEqual({ url: 'https://from-file.example:8443', token: 'file-token', tokenFrom: `config file ${file}` });
    expect(resolveConnection({}, { ...env, ROTATOR_URL: 'http://env.example', ROTATOR_TOKEN: 'env-token' }, noStdin, { needToken: true })).toMatchObject({ url: 'http://env.example', token: 'env-token', tokenFrom: 'ROTATOR_TOKEN' });
    expect(resolveConnection({ url: 'http://flag.example', tokenFile: '-' }, { ...env, ROTATOR_TOKEN: 'env-token' }, () => 'stdin-token\n', { needToken: true })).toMatchObject({ url: 'http://flag.example', token: 'stdin-token', tokenFrom: 'standard input' });
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, 'kept-token\n', { mode: 0o600 });
    expect(resolveConnection({ tokenFile }, env, noStdin, { needToken: true })).toMatchObject({ token: 'kept-token', tokenFrom: `token file ${tokenFile}` });
  });

  it('refuses a config or token file other users may read, a missing token, a bad URL and a malformed config, each with exit 2', async () => {
    const file = await configAt({ token: 't' }, 0o640);
    expect(refusal(() => resolveConnection({}, { ...env, ROTATOR_TOKEN: 'x' }, noStdin, { needToken: true }))).toMatchObject({ code: EXIT.usage, message: `config file ${file} is open to other users (mode 0640); it holds a token, so it must be mode 0600: chmod 600 ${file}` });
    await configAt({ token: 't', extra: 1 }, 0o600);
    expect(refusal(() => resolveConnection({}, env, noStdin, { needToken: true })).message).toMatch(/unknown field "extra"/);
    await configAt('{not json', 0o600);
    expect(refusal(() => resolveConnection({}, env, noStdin, { needToken: true })).message).toMatch(/is not JSON/);
    await rm(join(dir, '.config'), { recursive: true });
    const open = join(dir, 'open-token');
    await writeFile(open, 'tok', { mode: 0o644 });
    await chmod(open, 0o644);
    expect(refusal(() => resolveConnection({ tokenFile: open }, env, noStdin, { needToken: true })).message).toMatch(/^token file .* is open to other users \(mode 0644\)/);
    expect(refusal(() => resolveConnection({}, env, noStdin, { needToken: true })).message).toMatch(/^no API token: set ROTATOR_TOKEN/);
    expect(refusal(() => resolveConnection({ url: 'ftp://x' }, env, noStdin, { needToken: false })).message).toMatch(/must be an http:\/\/ or https:\/\/ URL/);
    expect(refusal(() => resolveConnection({ url: 'http://user:secret@x' }, env, noStdin, { needToken: false })).message).toMatch(/must not carry credentials/);
    expect(refusal(() => resolveConnection({ config: join(dir, 'absent.json') }, env, noStdin, { needToken: false })).message).toMatch(/no such file/);
  });

  it('maps HTTP statuses to the documented exit codes', () => {
    expect([401, 403, 404, 409, 400, 413, 415, 422, 429, 500, 503].map(exitForStatus)).toEqual([4, 4, 5, 6, 7, 7, 7, 7, 8, 8, 8]);
  });
});
