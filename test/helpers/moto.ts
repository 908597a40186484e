import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * moto's Secrets Manager server (`moto_server`, Python package moto; LocalStack's Secrets Manager
 * is built on it) as a real child process: a second, independent implementation of the AWS API
 * next to our own emulator. It checks no signature, so any access key works.
 */
export interface MotoServer {
  readonly url: string;
  readonly region: string;
  /** Any key pair is accepted; these are what the tests pass. */
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  close(): Promise<void>;
}

const MOTO_BINARY = 'moto_server';
const START_TIMEOUT_MS = 30_000;

/**
 * Why moto cannot run here (for the skip message), or undefined when `moto_server` is on PATH.
 * Only PATH is searched (running it takes seconds): an installed moto that then fails to start
 * fails the tests, with its output, rather than skipping them.
 */
export function motoUnavailableReason(): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const dir of dirs) {
    try {
      accessSync(join(dir, MOTO_BINARY), constants.X_OK);
      return undefined;
    } catch {
      // Not in this directory.
    }
  }
  return `${MOTO_BINARY} is not on PATH (install it with: pip install 'moto[server]')`;
}

/**
 * Starts `moto_server` on a port the OS picks (port 0: no race for a "free" port), reads the
 * port from its start-up line, and waits until it answers a Secrets Manager request.
 */
export async function startMotoServer(): Promise<MotoServer> {
  const child = spawn(MOTO_BINARY, ['-H', '127.0.0.1', '-p', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // moto logs every request; the pipes are drained so it never blocks on a full one, and the
  // last lines are kept for the error message should it fail to start.
  let tail = '';
  const port = new Promise<number>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      tail = (tail + d.toString()).slice(-4_000);
      const m = /Running on http:\/\/127\.0\.0\.1:(\d+)/.exec(tail);
      if (m) resolve(Number(m[1]));
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`${MOTO_BINARY} exited (${code ?? signal}) before listening: ${tail.trim()}`)));
  });
  const stop = async (): Promise<void> => stopChild(child, exited);
  try {
    const p = await withTimeout(port, START_TIMEOUT_MS, `${MOTO_BINARY} to print its port`);
    const url = `http://127.0.0.1:${p}`;
    await answering(url, Date.now() + START_TIMEOUT_MS);
    return { url, region: 'us-east-1', accessKeyId: 'AKIAMOTOTESTING00001', secretAccessKey: 'moto-accepts-any-secret', close: stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function answering(url: string, deadline: number): Promise<void> {
  for (;;) {
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'secretsmanager.ListSecrets' },
        body: '{}',
      });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // Not accepting connections yet.
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${MOTO_BINARY} at ${url} to answer ListSecrets`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
