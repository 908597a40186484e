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
  /** Resolves once the process has printed `text` (on stdout) from now on; rejects if it exits first. */
  printed(text: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `npm run worker|api|start` as a real child process, its output captured: the compiled
 * dist/src/main.js that test/helpers/compiled.ts (vitest's global setup) built for this run, or
 * the sources through tsx where there is none (outside vitest: `npm run chaos`).
 */
export function spawnRotator(mode: 'worker' | 'api' | 'all', env: Record<string, string>, logs?: LogCapture): RotatorProcess {
  const compiled = process.env.ROTATOR_TEST_DIST;
  return compiled ? spawnEntry(compiled, [], [mode], env, logs) : spawnTsEntry('src/main.ts', [mode], env, logs);
}

/**
 * A TypeScript entry point (node + tsx) that logs like main.ts — one "rotator started: " line once
 * it is up — as a real child process, its output captured. With `stdin`, the test writes to
 * `child.stdin` (test/engine/crash-resumer.ts takes commands there).
 */
export function spawnTsEntry(entry: string, args: string[], env: Record<string, string>, logs?: LogCapture, opts: { stdin?: boolean } = {}): RotatorProcess {
  return spawnEntry(entry, ['--import', 'tsx'], args, env, logs, opts);
}

function spawnEntry(entry: string, nodeArgs: string[], args: string[], env: Record<string, string>, logs?: LogCapture, opts: { stdin?: boolean } = {}): RotatorProcess {
  const child = spawn(process.execPath, [...nodeArgs, entry, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const gone = (what: string) => exited.then(({ code, signal }) => Promise.reject(new Error(`${entry} ${args.join(' ')} exited (code ${code}, signal ${signal}) before ${what}`)));
  // Each awaited text is looked for in what arrives after it was asked for (plus a line split
  // across chunks); the tail kept is only what such a split needs.
  const watchers = new Set<{ text: string; seen: string; found(): void }>();
  const printed = (text: string): Promise<void> => {
    const found = new Promise<void>((resolve) => watchers.add({ text, seen: '', found: resolve }));
    const foundOrGone = Promise.race([found, gone(`printing "${text}"`)]);
    // A process nobody waits for (one killed on purpose) must not leave an unhandled rejection.
    foundOrGone.catch(() => undefined);
    return foundOrGone;
  };
  // main.ts logs one summary line once everything is up (the API listening, the worker running).
  const ready = printed('"msg":"rotator started: ');
  child.stdout?.on('data', (d: Buffer) => {
    logs?.write(d);
    for (const w of watchers) {
      w.seen = (w.seen + d.toString()).slice(-4096);
      if (w.seen.includes(w.text)) {
        watchers.delete(w);
        w.found();
      }
    }
  });
  child.stderr?.on('data', (d: Buffer) => logs?.write(d));
  return {
    child,
    exited,
    ready,
    printed,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
