import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Redis } from 'ioredis';

export interface Proc {
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Start a child (tsx for a .ts script, plain node for compiled .js); resolve once `ready(line)` matches a stdout line. */
export async function spawnTs(
  script: string,
  args: string[],
  env: Record<string, string>,
  ready: (line: string) => boolean,
  extraNodeArgs: string[] = [],
  probe?: () => Promise<boolean>,
): Promise<Proc & { firstLine: string }> {
  // A compiled entry point (dist/…/*.js) runs on plain node, as `npm run worker` starts it; sources through tsx.
  const loader = script.endsWith('.js') ? [] : ['--import', 'tsx'];
  const child = spawn(process.execPath, [...extraNodeArgs, ...loader, script, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let errText = '';
  child.stderr?.on('data', (d: Buffer) => {
    errText = (errText + d.toString()).slice(-4000);
  });
  const firstLine = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    let done = false;
    rl.on('line', (line) => {
      if (!done && ready(line)) {
        done = true;
        resolve(line);
      }
    });
    child.once('exit', (code) => {
      if (!done) reject(new Error(`${script} exited (${code}) before it was ready: ${errText}`));
    });
    if (probe) {
      const poll = async (): Promise<void> => {
        while (!done && child.exitCode === null) {
          if (await probe()) {
            done = true;
            resolve('');
            return;
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      void poll();
    }
  });
  return {
    child,
    firstLine,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
      }),
  };
}

/** CPU milliseconds (user + system) a process has used so far, from /proc. */
export function cpuMs(pid: number): number {
  const { user, system } = cpuSplitMs(pid);
  return user + system;
}

/** User and system (kernel) CPU of a process so far, ms. */
export function cpuSplitMs(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // CLK_TCK is 100 on Linux
  return { user: Number(fields[11]) * 10, system: Number(fields[12]) * 10 };
}

/**
 * CPU ms (user + system) of a process's threads so far, by kind: `main` (the event loop), `pool` (libuv's
 * pool: file-system calls, crypto), and the others by name (`V8 DefaultWorke`: concurrent GC and compilation).
 */
export function threadCpuMs(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      // Node 20's libuv leaves its pool's threads unnamed (they show as `node`): the main thread is tid = pid.
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const name = Number(tid) === pid ? 'main' : comm === 'node' ? 'pool' : comm;
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[name] = (out[name] ?? 0) + (Number(fields[11]) + Number(fields[12])) * 10;
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** Peak resident set (VmHWM) in MiB. */
export function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Total Redis commands executed (INFO commandstats), optionally excluding some. */
export async function redisCommandCount(r: Redis): Promise<number> {
  const info = await r.info('commandstats');
  let total = 0;
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) total += Number(m[2]);
  return total;
}

export async function redisUsedMemory(r: Redis): Promise<number> {
  const m = /used_memory:(\d+)/.exec(await r.info('memory'));
  return m ? Number(m[1]) : NaN;
}

export async function pool<T>(items: T[], concurrency: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i] as T, i);
      }
    }),
  );
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export const round = (n: number, d = 2): number => Math.round(n * 10 ** d) / 10 ** d;

/** CPU milliseconds the Redis server has used (INFO cpu). */
export async function redisCpuMs(r: Redis): Promise<number> {
  const info = await r.info('cpu');
  const get = (k: string): number => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return (get('used_cpu_sys') + get('used_cpu_user')) * 1000;
}
