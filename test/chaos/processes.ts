import { spawnRotator, type RotatorProcess } from '../helpers/processes.ts';
import { LogCapture } from '../helpers/stack.ts';

/** One life of a process that ended on its own: when it started and ended, and the last line it printed. */
export interface ProcessLife {
  startedAt: number;
  exitedAt: number;
  lastLine: string;
}

/**
 * One Rotator process (a worker or the API) that the run kills and starts again. Every life's
 * output is kept for the leak scan. An exit the run did not cause is reported (and the process
 * started again, so one bug does not end the run).
 */
export class ManagedProcess {
  readonly logs: LogCapture[] = [];
  #proc: RotatorProcess | undefined;
  #killing = false;
  #stopping = false;
  #restartTimer: NodeJS.Timeout | undefined;
  lives = 0;

  constructor(
    readonly name: string,
    private readonly mode: 'worker' | 'api',
    private readonly env: Record<string, string>,
    private readonly onUnexpectedExit: (message: string, life: ProcessLife) => void,
  ) {}

  get up(): boolean {
    const c = this.#proc?.child;
    return !!c && c.exitCode === null && c.signalCode === null;
  }

  get pid(): number | undefined {
    return this.#proc?.child.pid;
  }

  start(): void {
    if (this.up || this.#stopping) return;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    const logs = new LogCapture();
    this.logs.push(logs);
    const startedAt = Date.now();
    const proc = spawnRotator(this.mode, this.env, logs);
    this.#proc = proc;
    this.lives++;
    void proc.exited.then(({ code, signal }) => {
      if (this.#proc !== proc || this.#killing || this.#stopping) return;
      const lines = logs.text().split('\n').filter(Boolean);
      const tail = lines.slice(-5).join(' | ');
      this.onUnexpectedExit(`${this.name} (pid ${proc.child.pid}) exited on its own (code ${code}, signal ${signal}); last output: ${tail.slice(0, 1_500)}`, {
        startedAt,
        exitedAt: Date.now(),
        lastLine: lines.at(-1) ?? '',
      });
      this.#restartTimer = setTimeout(() => this.start(), 1_000);
    });
  }

  /** SIGKILL now; start again after `restartAfterMs`. */
  async kill(restartAfterMs: number): Promise<boolean> {
    if (!this.up || !this.#proc) return false;
    this.#killing = true;
    const proc = this.#proc;
    proc.child.kill('SIGKILL');
    await proc.exited;
    this.#killing = false;
    this.#restartTimer = setTimeout(() => this.start(), restartAfterMs);
    return true;
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    await this.#proc?.stop();
  }

  text(): string {
    return this.logs.map((l) => l.text()).join('');
  }
}
