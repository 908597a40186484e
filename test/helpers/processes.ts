import { spawn, type ChildProcess } from 'node:child_process';
import type { LogCapture } from './stack.ts';

export interface RotatorProcess {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * Resolves once the process has started what it was asked to (it logged "worker started" or
   * "API listening"); rejects if it exits first. Starting one takes seconds of CPU (node, tsx and
   * every dependency), more on a busy machine: wait for this rather than for a guessed time.
   */
  ready: Promise<void>;
  stop(): Promise<void>;
}

/** `npm run worker|api|start` as a real child process (node + tsx), its output captured. */
export function spawnRotator(mode: 'worker' | 'api' | 'all', env: Record<string, string>, logs?: LogCapture): RotatorProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', mode], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // main.ts logs one summary line once everything is up (the API listening, the worker running).
  const startedLine = '"msg":"rotator started: ';
  let seen = '';
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  child.stdout?.on('data', (d: Buffer) => {
    logs?.write(d);
    // Keep only what a line split across chunks needs.
    seen = (seen + d.toString()).slice(-4096);
    if (seen.includes(startedLine)) onReady();
  });
  child.stderr?.on('data', (d: Buffer) => logs?.write(d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const readyOrGone = Promise.race([ready, exited.then(({ code, signal }) => Promise.reject(new Error(`rotator ${mode} process exited (code ${code}, signal ${signal}) before it started`)))]);
  // A process nobody waits for (one killed on purpose) must not leave an unhandled rejection.
  readyOrGone.catch(() => undefined);
  return {
    child,
    exited,
    ready: readyOrGone,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
