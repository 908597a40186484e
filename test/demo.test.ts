import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { within } from './helpers/stack.ts';

/** `npm run demo` is the first thing a user runs: it must work on embedded defaults, end to end. */
describe('npm run demo', () => {
  it('starts embedded Redis, the emulator, API and worker, and rotates every subaccount', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/demo.ts', '--once'], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', DRAIN_SECONDS: '1', PORT: '0', DEMO_DATA_DIR: mkdtempSync(join(tmpdir(), 'rotator-demo-')) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    // A guard, not a measure: the demo starts everything in one process, which takes a while on a
    // busy machine. On a hang, stop it (it stops its embedded Redis) and show what it printed.
    const code = await within('the demo to rotate every subaccount and exit', exited, 150_000).catch(async (err: Error) => {
      child.kill('SIGTERM');
      await exited;
      throw new Error(`${err.message}; its output:\n${out}`);
    });
    expect(code, out).toBe(0);
    expect(out).toMatch(/Demo token \(admin\): rot_/);
    expect(out).toMatch(/curl -s -X POST http:\/\/127\.0\.0\.1:\d+\/v1\/rotations/);
    expect(out.match(/delete-old\s+completed/g)).toHaveLength(3);
    expect(out).toMatch(/All demo rotations succeeded/);
  }, 180_000);
});
