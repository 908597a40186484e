import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/rotator/program.ts';
import { completionScript } from '../../src/cli/rotator/completion.ts';

/**
 * `rotator completion zsh` in a real zsh: the script that command prints (generated here from the
 * same command tree, without a process per run) is sourced by an interactive zsh under zsh/zpty,
 * as a ~/.zshrc line would, and completion is driven by keystrokes: a word, TAB, then the completed
 * line is printed. The driver waits for the output it expects (zpty -r with a pattern), never for
 * a time. Skips, saying why, where zsh is not installed (.ci/run installs it).
 */
const hasZsh = spawnSync('zsh', ['--version']).status === 0;
if (!hasZsh) console.warn('test/cli/completion-zsh.test.ts skipped: zsh is not installed (apt-get install -y zsh)');

const run = promisify(execFile);

describe.skipIf(!hasZsh)('rotator completion zsh, in zsh', { timeout: 120_000 }, () => {
  let dir: string;
  let script: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-zsh-'));
    const { program } = buildProgram({ env: {}, readStdin: () => '', signal: new AbortController().signal, version: 'test' });
    script = join(dir, 'rotator.zsh');
    await writeFile(script, completionScript(program, 'zsh'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** zsh -f: no user or system start-up files; HOME is the scratch directory (compinit's dump goes there). */
  const zsh = (code: string) => run('zsh', ['-f', '-c', code], { env: { PATH: process.env.PATH ?? '', HOME: dir, TERM: 'dumb' }, cwd: dir });

  it('loads without a word on stderr, with or without compinit run first, and registers a completion for rotator', async () => {
    for (const before of ['autoload -U compinit && compinit -u -D', ':']) {
      const { stdout, stderr } = await zsh(`${before}; source ${script} || exit 1; print -r -- "$_comps[rotator]"`);
      expect(stderr).toBe('');
      expect(stdout.trim()).toBe('_bash_complete -F _rotator_completion');
    }
  });

  it('completes commands, subcommands, flags and a flag\'s choices when TAB is pressed', async () => {
    const lines = ['rotator ba', 'rotator batch pa', 'rotator list --status runn', 'rotator rotate AC1 --fo'];
    // Each marker is typed as R$((n))S and printed as RnS, so the echo of the typed line never matches it.
    const driver = [
      'zmodload zsh/zpty',
      'zpty z zsh -f -i',
      `zpty -w z 'PS1="Z""P> "; autoload -U compinit && compinit -u -D; source ${script} && print LOAD$((1+1))ED'`,
      "zpty -r z out '*LOAD2ED*'",
      "zpty -r z out '*ZP> '",
      ...lines.flatMap((line, i) => [
        // The line, TAB, then to the start of the line to make it `print -r -- RnS: <completed line>`.
        `zpty -w -n z '${line}'$'\\t\\C-a''print -r -- R$((${i + 1}))S: '$'\\n'`,
        `zpty -r z out '*R${i + 1}S: *ZP> '`,
        `print -r -- "\${\${out##*R${i + 1}S: }%%$'\\r'*}"`,
      ]),
      'zpty -d z',
    ].join('\n');
    const { stdout } = await zsh(driver);
    expect(stdout.split('\n').map((l) => l.trimEnd()).filter(Boolean)).toEqual(['rotator batch', 'rotator batch pause', 'rotator list --status running', 'rotator rotate AC1 --follow']);
  });
});
