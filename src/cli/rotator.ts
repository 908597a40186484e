import { readFileSync } from 'node:fs';
import { run } from './rotator/program.ts';
import { EXIT } from './rotator/exit-codes.ts';

/**
 * `rotator`: the command-line client of the HTTP API (README, "Command line"). This entry point is
 * the one place the CLI reads its process: argv, the environment names it documents, standard
 * input for `--token-file -`, and Ctrl-C. The CLI is a client, not the service, so it reads its own
 * variables here rather than through src/config.ts.
 */
const controller = new AbortController();
let interrupted = false;
process.once('SIGINT', () => {
  interrupted = true;
  controller.abort();
  // A second Ctrl-C, or a command that does not watch the signal, ends at once.
  process.once('SIGINT', () => process.exit(EXIT.interrupted));
  setTimeout(() => process.exit(EXIT.interrupted), 2000).unref();
});

/** The version in Rotator's package.json, found upwards from here: src/cli/ in a checkout, dist/src/cli/ in a build. */
function packageVersion(): string {
  for (let up = '../../'; up.length <= 15; up += '../') {
    try {
      const pkg = JSON.parse(readFileSync(new URL(`${up}package.json`, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'rotator' && pkg.version) return pkg.version;
    } catch {
      // not here: one level up
    }
  }
  return 'unknown';
}
const { ROTATOR_URL, ROTATOR_TOKEN, ROTATOR_TOKEN_FILE, ROTATOR_CONFIG, XDG_CONFIG_HOME, HOME } = process.env;

const code = await run(process.argv.slice(2), {
  env: { ROTATOR_URL, ROTATOR_TOKEN, ROTATOR_TOKEN_FILE, ROTATOR_CONFIG, XDG_CONFIG_HOME, HOME },
  readStdin: () => readFileSync(0, 'utf8'),
  signal: controller.signal,
  version: packageVersion(),
});
if (interrupted) process.stderr.write('rotator: interrupted; a rotation or batch it started or followed goes on (rotator status <id>, rotator batch status <id>)\n');
// Exit now rather than when the event loop empties: a stream or socket a failed command left open
// must not keep it alive. (Writes to pipes, files and terminals are synchronous on POSIX: nothing
// written is lost.)
process.exit(interrupted ? EXIT.interrupted : code);
