import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CliError, EXIT } from './exit-codes.ts';

/** Where the API is and the bearer token to show it. The token is never printed. */
export interface Connection {
  url: string;
  token: string;
  /** Where the token came from, for messages ("ROTATOR_TOKEN", "config file ~/.config/rotator/config.json"). */
  tokenFrom: string;
}

/** The environment names the CLI reads (passed in from the entry point, the one place that reads process.env). */
export interface CliEnv {
  ROTATOR_URL?: string | undefined;
  ROTATOR_TOKEN?: string | undefined;
  ROTATOR_TOKEN_FILE?: string | undefined;
  ROTATOR_CONFIG?: string | undefined;
  XDG_CONFIG_HOME?: string | undefined;
  HOME?: string | undefined;
}

export interface ConnectionFlags {
  url?: string;
  tokenFile?: string;
  config?: string;
}

/** The config file: `{"url": "...", "token": "..."}` or `{"url": "...", "tokenFile": "..."}`. */
interface ConfigFile {
  url?: string;
  token?: string;
  tokenFile?: string;
}

export const DEFAULT_URL = 'http://127.0.0.1:8080';

export function defaultConfigPath(env: CliEnv): string {
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return join(base, 'rotator', 'config.json');
}

/**
 * A file that holds a token must be the user's alone: one that group or others may read (any of
 * the 077 bits) is refused, as ssh refuses such a private key, rather than used and leaked.
 */
function assertPrivate(path: string, what: string): void {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) {
    throw new CliError(EXIT.usage, `${what} ${path} is open to other users (mode ${mode.toString(8).padStart(4, '0')}); it holds a token, so it must be mode 0600: chmod 600 ${path}`);
  }
}

function readPrivate(path: string, what: string): string {
  try {
    assertPrivate(path, what);
    return readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof CliError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new CliError(EXIT.usage, `cannot read ${what} ${path}: ${e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message}`);
  }
}

function readConfigFile(path: string, explicit: boolean): ConfigFile | undefined {
  try {
    statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !explicit) return undefined;
  }
  const text = readPrivate(path, 'config file');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CliError(EXIT.usage, `config file ${path} is not JSON: ${(err as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CliError(EXIT.usage, `config file ${path} must hold a JSON object such as {"url": "${DEFAULT_URL}", "token": "…"}`);
  const cfg = parsed as Record<string, unknown>;
  for (const key of Object.keys(cfg)) {
    if (!['url', 'token', 'tokenFile'].includes(key)) throw new CliError(EXIT.usage, `config file ${path}: unknown field "${key}" (allowed: url, token, tokenFile)`);
    if (typeof cfg[key] !== 'string') throw new CliError(EXIT.usage, `config file ${path}: "${key}" must be a string`);
  }
  return cfg as ConfigFile;
}

/** `-` reads the token from standard input (a pipe: `pass show rotator | rotator --token-file - …`). */
function readTokenFile(path: string, readStdin: () => string): string {
  return path === '-' ? readStdin() : readPrivate(path, 'token file');
}

function normalizeUrl(raw: string, from: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CliError(EXIT.usage, `${from} "${raw}" is not a URL (expected e.g. ${DEFAULT_URL})`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CliError(EXIT.usage, `${from} "${raw}" must be an http:// or https:// URL`);
  if (u.username || u.password) throw new CliError(EXIT.usage, `${from} must not carry credentials; give the token with ROTATOR_TOKEN, --token-file or the config file`);
  return u.toString().replace(/\/+$/, '');
}

/**
 * URL and token, each from the first of: a flag (`--url`, `--token-file`), the environment
 * (ROTATOR_URL; ROTATOR_TOKEN or ROTATOR_TOKEN_FILE), the config file (`--config`, ROTATOR_CONFIG,
 * else $XDG_CONFIG_HOME/rotator/config.json). There is deliberately no `--token <value>` flag: a
 * token on the command line lands in shell history and in every `ps` listing.
 */
export function resolveConnection(flags: ConnectionFlags, env: CliEnv, readStdin: () => string, opts: { needToken: boolean }): Connection {
  const explicit = flags.config ?? env.ROTATOR_CONFIG;
  const path = explicit ?? defaultConfigPath(env);
  const file = readConfigFile(path, explicit !== undefined);

  const url = flags.url
    ? normalizeUrl(flags.url, '--url')
    : env.ROTATOR_URL
      ? normalizeUrl(env.ROTATOR_URL, 'ROTATOR_URL')
      : file?.url
        ? normalizeUrl(file.url, `"url" in ${path}`)
        : DEFAULT_URL;

  let token: string | undefined;
  let tokenFrom = '';
  if (flags.tokenFile) {
    token = readTokenFile(flags.tokenFile, readStdin);
    tokenFrom = flags.tokenFile === '-' ? 'standard input' : `token file ${flags.tokenFile}`;
  } else if (env.ROTATOR_TOKEN) {
    token = env.ROTATOR_TOKEN;
    tokenFrom = 'ROTATOR_TOKEN';
  } else if (env.ROTATOR_TOKEN_FILE) {
    token = readTokenFile(env.ROTATOR_TOKEN_FILE, readStdin);
    tokenFrom = `token file ${env.ROTATOR_TOKEN_FILE}`;
  } else if (file?.token) {
    token = file.token;
    tokenFrom = `config file ${path}`;
  } else if (file?.tokenFile) {
    token = readTokenFile(file.tokenFile, readStdin);
    tokenFrom = `token file ${file.tokenFile}`;
  }
  token = token?.trim();
  if (!token && opts.needToken) {
    throw new CliError(EXIT.usage, `no API token: set ROTATOR_TOKEN, pass --token-file <path> (or - for standard input), or put "token" in ${path} (mode 0600)`);
  }
  if (token && /\s/.test(token)) throw new CliError(EXIT.usage, `the token from ${tokenFrom} contains whitespace: a token is one word`);
  return { url, token: token ?? '', tokenFrom };
}
