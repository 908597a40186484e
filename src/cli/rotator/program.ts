import { readFileSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { mintToken, ROLES, TOKEN_NAME, type Role } from '../../api/tokens.ts';
import { ApiClient } from './client.ts';
import { resolveConnection, type CliEnv } from './connection.ts';
import { CliError, EXIT, EXIT_CODE_HELP, type ExitCode } from './exit-codes.ts';
import { batchSettled, followBatch, followRotation, stepLine, type BatchView, type RotationView } from './follow.ts';
import { processOutput, type Output } from './output.ts';
import { cell, credentialId, fields, table, when } from './render.ts';
import { completionScript } from './completion.ts';

/** What the program needs from its process: passed in, so the entry point is the only place that reads them. */
export interface CliDeps {
  env: CliEnv;
  readStdin(): string;
  /** Aborted on Ctrl-C: a followed stream stops, and the command exits 130. */
  signal: AbortSignal;
  version: string;
  /** Where help and commander's own messages go (default: process.stdout and process.stderr). */
  writeOut?(text: string): void;
  writeErr?(text: string): void;
}

interface GlobalOptions {
  url?: string;
  tokenFile?: string;
  config?: string;
  json?: boolean;
  timeout: number;
}

const ACCOUNT_SID = /^AC[0-9a-f]{32}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const CREDENTIAL_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const ROTATION_STATUSES = ['pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled', 'rolled_back'];

const accountSid = (v: string): string => {
  if (!ACCOUNT_SID.test(v)) throw new InvalidArgumentError(`"${v}" is not an account SID (AC followed by 32 lower-case hex digits)`);
  return v;
};
const uuid = (what: string) => (v: string): string => {
  if (!UUID.test(v)) throw new InvalidArgumentError(`"${v}" is not a ${what} id (a UUID such as 0190c5a2-7b1e-7c3d-9f00-123456789abc)`);
  return v;
};
const credentialName = (v: string): string => {
  if (!CREDENTIAL_NAME.test(v)) throw new InvalidArgumentError(`"${v}" is not a credential name (1–63 of a-z 0-9 _ -, starting with a letter or digit)`);
  return v;
};
const integer = (min: number, max: number) => (v: string): number => {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) throw new InvalidArgumentError(`"${v}" is not a whole number from ${min} to ${max}`);
  return n;
};
const fraction = (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError(`"${v}" is not a number from 0 to 1`);
  return n;
};
const collect = <T>(parse: (v: string) => T) => (v: string, previous: T[] | undefined): T[] => [...(previous ?? []), parse(v)];

/** The `rotator` command tree. `run` parses argv and returns the exit code; nothing here calls process.exit. */
export function buildProgram(deps: CliDeps): { program: Command; exitCode(): number } {
  let exitCode: number = EXIT.ok;
  const program = new Command('rotator')
    .description('Command-line client of the Rotator HTTP API: start and follow rotations, run batches, read the fleet, compliance and schedule.')
    .version(deps.version, '-V, --version')
    .option('--url <url>', 'the API (default: ROTATOR_URL, the config file, else http://127.0.0.1:8080)')
    .option('--token-file <path>', 'read the API token from this file (mode 0600), or - for standard input (default: ROTATOR_TOKEN, ROTATOR_TOKEN_FILE, the config file)')
    .option('--config <path>', 'config file {"url", "token"} (mode 0600; default: ROTATOR_CONFIG, else $XDG_CONFIG_HOME/rotator/config.json)')
    .option('--json', "print the API's JSON instead of tables (one JSON value; NDJSON events when following)")
    .addOption(new Option('--timeout <seconds>', 'give up on a request after this long').argParser(integer(1, 3600)).default(30))
    .showHelpAfterError(false)
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .addHelpText(
      'after',
      `
The token never goes on the command line: export ROTATOR_TOKEN (e.g. from your secret manager),
pass --token-file (mode 0600) or --token-file - to read it from standard input, or keep it in the
config file (mode 0600).

${EXIT_CODE_HELP}`,
    );

  const act =
    <A extends unknown[]>(fn: (...args: A) => Promise<number> | number) =>
    async (...args: A): Promise<void> => {
      exitCode = await fn(...args);
    };

  const ctx = (cmd: Command, opts: { needToken?: boolean } = {}): { client: ApiClient; out: Output; globals: GlobalOptions } => {
    const globals = cmd.optsWithGlobals<GlobalOptions>();
    const out = processOutput(globals.json === true);
    const conn = resolveConnection({ url: globals.url, tokenFile: globals.tokenFile, config: globals.config }, deps.env, deps.readStdin, { needToken: opts.needToken ?? true });
    return { client: new ApiClient(conn, globals.timeout * 1000), out, globals };
  };

  // ----- rotations -----

  program
    .command('rotate')
    .description('Start a rotation of a managed credential (default: the subaccount\'s "default" one)')
    .argument('<accountSid>', 'the subaccount (AC…)', accountSid)
    .option('--credential <name>', 'the managed credential to rotate', credentialName)
    .option('--reason <text>', 'why (kept in the record and the audit trail)')
    .option('--dry-run', 'run the steps without changing anything at Twilio or in the store')
    .option('--urgent', 'an emergency rotation after a leak: short drain (admin role; --reason required)')
    .option('--drain-seconds <n>', 'with --urgent: the drain in seconds (default 0)', integer(0, 86_400))
    .option('--idempotency-key <key>', 'repeat safely: the same key and request get the first answer')
    .option('-f, --follow', 'follow the rotation live until it ends; exit 0 when it succeeded, 1 when not')
    .addHelpText('after', '\nExamples:\n  export ROTATOR_TOKEN="$(pass show rotator/operator)"\n  rotator rotate AC0123456789abcdef0123456789abcdef --reason "quarterly" --follow\n  rotator rotate AC0123456789abcdef0123456789abcdef --credential billing-prod --json')
    .action(act(async (sid: string, o: { credential?: string; reason?: string; dryRun?: boolean; urgent?: boolean; drainSeconds?: number; idempotencyKey?: string; follow?: boolean }, cmd: Command) => {
      if (o.drainSeconds !== undefined && !o.urgent) throw new CliError(EXIT.usage, '--drain-seconds applies only with --urgent');
      if (o.urgent && !o.reason) throw new CliError(EXIT.usage, '--urgent needs --reason (what leaked, and where)');
      const { client, out } = ctx(cmd);
      const body = {
        accountSid: sid,
        ...(o.credential ? { credential: o.credential } : {}),
        ...(o.reason ? { reason: o.reason } : {}),
        ...(o.dryRun ? { dryRun: true } : {}),
        ...(o.urgent ? { urgent: true } : {}),
        ...(o.drainSeconds !== undefined ? { drainSeconds: o.drainSeconds } : {}),
      };
      const start = async (): Promise<{ id: string; accountSid: string; credential: string; status: string; step: string }> =>
        client.json('/v1/rotations', { method: 'POST', body, ...(o.idempotencyKey ? { headers: { 'idempotency-key': o.idempotencyKey } } : {}) });
      if (!o.follow) {
        const started = await start();
        if (out.json) out.value(started);
        else out.line(`rotation ${started.id} started: ${credentialId(started.accountSid, started.credential)} (${started.status}, ${started.step})\nfollow it: rotator status ${started.id} --follow`);
        return EXIT.ok;
      }
      const final = await followRotation(client, out, deps.signal, {
        start: async () => {
          const started = await start();
          if (!out.json) out.line(`rotation ${started.id} of ${credentialId(started.accountSid, started.credential)}`);
          return started.id;
        },
      });
      return finishRotation(out, final);
    }));

  program
    .command('status')
    .description('One rotation: where it is, its keys and its history')
    .argument('<id>', 'the rotation id', uuid('rotation'))
    .option('-f, --follow', 'then follow it live until it ends; exit 0 when it succeeded, 1 when not')
    .action(act(async (id: string, o: { follow?: boolean }, cmd: Command) => {
      const { client, out } = ctx(cmd);
      if (o.follow) {
        if (!out.json) out.line(`rotation ${id}`);
        return finishRotation(out, await followRotation(client, out, deps.signal, { id }));
      }
      const rec = await client.json<RotationView & Record<string, unknown>>(`/v1/rotations/${id}`);
      if (out.json) out.value(rec);
      else out.line(rotationDetail(rec));
      return EXIT.ok;
    }));

  program
    .command('list')
    .description('Rotations, newest first')
    .option('--account <sid>', 'only this subaccount', accountSid)
    .option('--credential <name>', 'only this credential name', credentialName)
    .addOption(new Option('--status <status>', 'only rotations in this status').choices(ROTATION_STATUSES))
    .option('--limit <n>', 'rotations per page (1–200)', integer(1, 200))
    .option('--cursor <cursor>', 'the page after this one (printed after a page with more)')
    .option('--all', 'every page, following the cursor')
    .action(act(async (o: { account?: string; credential?: string; status?: string; limit?: number; cursor?: string; all?: boolean }, cmd: Command) => {
      const { client, out } = ctx(cmd);
      const query = { accountSid: o.account, credential: o.credential, status: o.status, limit: o.limit, cursor: o.cursor };
      const page = await readPages<RotationView & { trigger: string; updatedAt: string }>(client, '/v1/rotations', query, o.all === true);
      if (out.json) out.value(page);
      else {
        out.line(table(['id', 'credential', 'status', 'step', 'trigger', 'updated'], page.items.map((r) => [r.id, credentialId(r.accountSid, r.credential), r.status, r.step, r.trigger, when(r.updatedAt)])));
        moreNote(out, page.nextCursor);
      }
      return EXIT.ok;
    }));

  for (const [action, summary] of [
    ['cancel', 'Cancel a rotation before delete-old: the old key is made current again'],
    ['rollback', 'Roll a rotation back before delete-old: the old key is made current again'],
    ['retry', 'Retry a failed rotation (a fully undone one starts again; an interrupted one resumes)'],
  ] as const) {
    program
      .command(action)
      .description(summary)
      .argument('<id>', 'the rotation id', uuid('rotation'))
      .option('-f, --follow', 'then follow it until it ends; exit 0 when it succeeded, 1 when not')
      .action(act(async (id: string, o: { follow?: boolean }, cmd: Command) => {
        const { client, out } = ctx(cmd);
        if (o.follow) {
          return finishRotation(out, await followRotation(client, out, deps.signal, {
            start: async () => {
              const rec = await client.json<RotationView>(`/v1/rotations/${id}/${action}`, { method: 'POST' });
              if (!out.json) out.line(`${action} accepted: rotation ${id} of ${credentialId(rec.accountSid, rec.credential)}`);
              return id;
            },
          }));
        }
        const rec = await client.json<RotationView & { undoRequested?: unknown }>(`/v1/rotations/${id}/${action}`, { method: 'POST' });
        if (out.json) out.value(rec);
        else out.line(`${action} accepted: rotation ${id} of ${credentialId(rec.accountSid, rec.credential)} is ${rec.status} in ${rec.step}${action === 'retry' ? '' : ' (the worker undoes it next)'}\nfollow it: rotator status ${id} --follow`);
        return EXIT.ok;
      }));
  }

  // ----- fleet -----

  program
    .command('accounts')
    .description('Managed subaccounts (key age, last and next rotation); with a SID, one subaccount and its credentials')
    .argument('[accountSid]', 'one subaccount (AC…)', accountSid)
    .option('--limit <n>', 'subaccounts per page (1–500)', integer(1, 500))
    .option('--cursor <cursor>', 'the page after this one')
    .option('--all', 'every page, following the cursor')
    .action(act(async (sid: string | undefined, o: { limit?: number; cursor?: string; all?: boolean }, cmd: Command) => {
      const { client, out } = ctx(cmd);
      if (sid) {
        const a = await client.json<AccountDetail>(`/v1/accounts/${sid}`);
        if (out.json) out.value(a);
        else out.line(accountDetail(a));
        return EXIT.ok;
      }
      const page = await readPages<AccountRow>(client, '/v1/accounts', { limit: o.limit, cursor: o.cursor }, o.all === true);
      if (out.json) out.value(page);
      else {
        out.line(table(['account', 'name', 'status', 'current key', 'age (d)', 'last rotated', 'next rotation', 'overdue'], page.items.map((a) => [a.accountSid, a.friendlyName, a.status, a.currentKeySid, a.keyAgeDays, when(a.lastRotatedAt), when(a.nextRotationAt), a.overdue])));
        moreNote(out, page.nextCursor);
      }
      return EXIT.ok;
    }));

  program
    .command('policies')
    .description('The rotation policies in force; with a name, one policy')
    .argument('[name]', 'one policy')
    .action(act(async (name: string | undefined, _o: unknown, cmd: Command) => {
      const { client, out } = ctx(cmd);
      if (name) {
        const p = await client.json<PolicyRow>(`/v1/policies/${encodeURIComponent(name)}`);
        if (out.json) out.value(p);
        else out.line(policyTable([p]));
        return EXIT.ok;
      }
      const list = await client.json<{ items: PolicyRow[] }>('/v1/policies');
      if (out.json) out.value(list);
      else out.line(policyTable(list.items));
      return EXIT.ok;
    }));

  program
    .command('compliance')
    .description('The compliance report: per credential its policy, key age, last rotation, due date; or per subaccount its key sprawl')
    .addOption(new Option('--section <section>', 'which rows').choices(['credentials', 'subaccounts']).default('credentials'))
    .option('--overdue', 'credentials: only overdue ones')
    .option('--label <label>', 'credentials: only subaccounts with this label')
    .option('--policy <name>', 'credentials: only those this policy applies to')
    .option('--sprawl', 'subaccounts: only those with sprawl or leftover keys')
    .option('--limit <n>', 'rows per page (1–500)', integer(1, 500))
    .option('--cursor <cursor>', 'the page after this one')
    .option('--all', 'every page, following the cursor')
    .option('--csv', 'the whole report as CSV (RFC 4180) on stdout, filters applied')
    .addHelpText('after', '\nExamples:\n  rotator compliance --overdue\n  rotator compliance --csv > compliance.csv')
    .action(act(async (o: { section: string; overdue?: boolean; label?: string; policy?: string; sprawl?: boolean; limit?: number; cursor?: string; all?: boolean; csv?: boolean }, cmd: Command) => {
      const { client, out } = ctx(cmd);
      const filters = { overdue: o.overdue ? true : undefined, label: o.label, policy: o.policy };
      if (o.csv) {
        const res = await client.fetch('/v1/compliance', { query: filters, headers: { accept: 'text/csv' }, timeoutMs: 0, signal: deps.signal });
        await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), process.stdout, { end: false });
        return EXIT.ok;
      }
      const query = { section: o.section, ...filters, sprawl: o.sprawl ? true : undefined, limit: o.limit, cursor: o.cursor };
      const first = await client.json<ComplianceReport>('/v1/compliance', { query });
      const report = o.all && first.nextCursor ? { ...first, ...(await readPages<ComplianceReport['items'][number]>(client, '/v1/compliance', { ...query, cursor: first.nextCursor }, true, first.items)) } : first;
      if (out.json) out.value(report);
      else {
        out.line(complianceText(report));
        moreNote(out, report.nextCursor);
      }
      return EXIT.ok;
    }));

  program
    .command('schedule')
    .description("The planner: fleet pause, last tick, due, overdue, in flight, and the forecast of the next days")
    .option('--days <n>', 'forecast days (1–90)', integer(1, 90))
    .action(act(async (o: { days?: number }, cmd: Command) => {
      const { client, out } = ctx(cmd);
      const s = await client.json<ScheduleView>('/v1/schedule', { query: { days: o.days } });
      if (out.json) out.value(s);
      else out.line(scheduleText(s));
      return EXIT.ok;
    }));

  // ----- batches -----

  const batch = program.command('batch').description('Rotate a selection of the fleet in waves (canary first, halting on failures)');

  batch
    .command('start')
    .description('Start a batch; select with exactly one of --all, --label, --account, --credential')
    .option('--all', 'every active, unpaused credential')
    .option('--label <label>', 'subaccounts with this label (repeat: all must apply)', collect(String))
    .option('--account <sid>', "this subaccount's credentials (repeatable)", collect(accountSid))
    .option('--credential <sid/name>', 'one managed credential, AC…/name (repeatable)', collect(credentialRef))
    .requiredOption('--reason <text>', 'why (goes into every rotation and the audit trail)')
    .requiredOption('--canary <count|percent>', 'size of the first wave: a count (5) or a share ("10%")')
    .requiredOption('--step <percent>', 'each later wave, in percent of the selection', integer(1, 100))
    .requiredOption('--bake-seconds <n>', 'watch each wave this long after it ends (0: none)', integer(0, 604_800))
    .requiredOption('--max-failure-rate <rate>', 'halt once a wave fails more often than this share (0–1)', fraction)
    .option('--dry-run', 'dry-run rotations: nothing changes at Twilio or in the store')
    .option('--idempotency-key <key>', 'repeat safely: the same key and request get the first answer')
    .option('-f, --follow', 'follow it with a progress bar per wave; exit 0 when it completed, 1 when halted or cancelled')
    .addHelpText('after', '\nExamples:\n  rotator batch start --label hipaa --reason "Q3 rotation" --canary 5% --step 25 --bake-seconds 600 --max-failure-rate 0.02 --follow\n  rotator batch start --account AC0123456789abcdef0123456789abcdef --reason "drill" --canary 1 --step 100 --bake-seconds 0 --max-failure-rate 0 --dry-run --json')
    .action(act(async (o: { all?: boolean; label?: string[]; account?: string[]; credential?: Array<{ accountSid: string; name: string }>; reason: string; canary: string; step: number; bakeSeconds: number; maxFailureRate: number; dryRun?: boolean; idempotencyKey?: string; follow?: boolean }, cmd: Command) => {
      const chosen = [o.all && 'all', o.label && '--label', o.account && '--account', o.credential && '--credential'].filter(Boolean);
      if (chosen.length !== 1) throw new CliError(EXIT.usage, chosen.length ? `choose one selection, not ${chosen.join(' and ')}` : 'choose what to rotate: --all, --label, --account or --credential');
      const selector = o.all ? 'all' : o.label ? { labels: o.label } : o.account ? { accountSids: o.account } : { credentials: o.credential };
      const waves = { canary: /^\d+$/.test(o.canary) ? Number(o.canary) : o.canary, step: o.step, bakeSeconds: o.bakeSeconds };
      const body = { selector, reason: o.reason, waves, maxFailureRate: o.maxFailureRate, ...(o.dryRun ? { dryRun: true } : {}) };
      const { client, out } = ctx(cmd);
      const start = (): Promise<BatchView> => client.json<BatchView>('/v1/batches', { method: 'POST', body, ...(o.idempotencyKey ? { headers: { 'idempotency-key': o.idempotencyKey } } : {}) });
      if (!o.follow) {
        const b = await start();
        if (out.json) out.value(b);
        else out.line(`batch ${b.id} started: ${b.total} credentials in ${b.progress.length} waves\nfollow it: rotator batch status ${b.id} --follow`);
        return EXIT.ok;
      }
      return finishBatch(out, await followBatch(client, out, deps.signal, { start: async () => (await start()).id }));
    }));

  batch
    .command('list')
    .description('Batches, newest first')
    .option('--limit <n>', 'batches per page (1–200)', integer(1, 200))
    .option('--cursor <cursor>', 'the page after this one')
    .action(act(async (o: { limit?: number; cursor?: string }, cmd: Command) => {
      const { client, out } = ctx(cmd);
      const page = await client.json<{ items: Array<BatchView & { reason: string; createdAt: string }>; nextCursor: string | null }>('/v1/batches', { query: { limit: o.limit, cursor: o.cursor } });
      if (out.json) out.value(page);
      else {
        out.line(table(['id', 'status', 'total', 'ok', 'failed', 'in flight', 'wave', 'created', 'reason'], page.items.map((b) => [b.id, b.status, b.total, b.counts.succeeded, b.counts.failed, b.counts.inFlight, `${b.currentWave}/${b.progress.length}`, when(b.createdAt), b.reason])));
        moreNote(out, page.nextCursor);
      }
      return EXIT.ok;
    }));

  batch
    .command('status')
    .description('One batch: status, progress per wave, halt reason')
    .argument('<id>', 'the batch id', uuid('batch'))
    .option('-f, --follow', 'follow it with a progress bar per wave; exit 0 when it completed, 1 when halted or cancelled')
    .action(act(async (id: string, o: { follow?: boolean }, cmd: Command) => {
      const { client, out } = ctx(cmd);
      if (o.follow) return finishBatch(out, await followBatch(client, out, deps.signal, { id }));
      const b = await client.json<BatchView & Record<string, unknown>>(`/v1/batches/${id}`);
      if (out.json) out.value(b);
      else out.line(batchText(b));
      return EXIT.ok;
    }));

  for (const [action, summary] of [
    ['pause', 'Pause a batch: nothing new starts; rotations in flight finish'],
    ['resume', 'Resume a paused batch where it left off'],
    ['cancel', 'Cancel a batch: nothing more starts; rotations in flight are undone where still possible'],
  ] as const) {
    batch
      .command(action)
      .description(summary)
      .argument('<id>', 'the batch id', uuid('batch'))
      .action(act(async (id: string, _o: unknown, cmd: Command) => {
        const { client, out } = ctx(cmd);
        const b = await client.json<BatchView>(`/v1/batches/${id}/${action}`, { method: 'POST' });
        if (out.json) out.value(b);
        else out.line(`batch ${id} is ${b.status}`);
        return EXIT.ok;
      }));
  }

  // ----- local tools -----

  const audit = program.command('audit').description('The hash-chained audit trail');
  audit
    .command('verify')
    .description("Check the audit chain: the API's export (admin token), an export file, or this host's Redis")
    .option('--file <export.jsonl>', 'check an export file offline (GET /v1/audit/export, or `rotator audit verify --save`)')
    .option('--local', "check this host's Redis directly (REDIS_URL, REDIS_PREFIX, else DATA_DIR's embedded Redis), as npm run audit:verify does")
    .option('--expect-head <sha256>', 'a head hash printed earlier and kept outside Redis: the chain must still contain it', (v: string) => {
      if (!/^[0-9a-fA-F]{64}$/.test(v)) throw new InvalidArgumentError('needs the 64-hex-digit head hash audit verify printed earlier');
      return v.toLowerCase();
    })
    .option('--save <path>', "with the API's export: also write the export to this file (to archive it)")
    .addHelpText('after', '\nExit 0 when the chain is intact, 1 when it is broken.')
    .action(act(async (o: { file?: string; local?: boolean; expectHead?: string; save?: string }, cmd: Command) => {
      if (o.file && o.local) throw new CliError(EXIT.usage, 'choose --file or --local, not both');
      const { checkAuditChain } = await import('../audit-chain.ts');
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const out = processOutput(globals.json === true);
      const io = { out: (l: string) => out.line(l), note: (l: string) => out.note(l) };
      let input: { lines: string[] } | { redis: true };
      if (o.file) {
        try {
          input = { lines: readFileSync(o.file, 'utf8').split('\n') };
        } catch (err) {
          throw new CliError(EXIT.usage, `cannot read ${o.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
      } else if (o.local) input = { redis: true };
      else {
        const { client } = ctx(cmd);
        const res = await client.fetch('/v1/audit/export', { headers: { accept: 'application/x-ndjson' }, timeoutMs: 0, signal: deps.signal });
        const text = await res.text();
        if (o.save) writeFileSync(o.save, text, { mode: 0o600 });
        out.note(`checking the export of ${client.conn.url}`);
        input = { lines: text.split('\n') };
      }
      try {
        const verdict = await checkAuditChain(input, o.expectHead, io);
        if (verdict === 'unverifiable') throw new CliError(EXIT.usage, 'the chain starts at a signed checkpoint: set AUDIT_CHECKPOINT_KEY to verify it');
        return verdict === 'intact' ? EXIT.ok : EXIT.failed;
      } catch (err) {
        if (err instanceof CliError) throw err;
        const name = (err as Error).constructor.name;
        throw new CliError(name === 'ConfigError' ? EXIT.usage : EXIT.unreachable, (err as Error).message);
      }
    }));

  const token = program.command('token').description('API tokens');
  token
    .command('mint')
    .description('Mint an API token: prints it once, and the API_TOKENS entry (its SHA-256) to configure')
    .argument('<name>', 'who or what holds it (1–64 letters, digits, _ . -)', (v: string) => {
      if (!TOKEN_NAME.test(v)) throw new InvalidArgumentError('use 1–64 letters, digits, _ . or -');
      return v;
    })
    .addArgument(new Argument('<role>', 'what it may do').choices([...ROLES]))
    .addHelpText('after', '\nExample:\n  rotator token mint ci-pipeline operator\nThe token is shown once: hand it over through your secret manager, never a chat or a ticket.')
    .action(act((name: string, role: Role, _o: unknown, cmd: Command) => {
      const out = processOutput(cmd.optsWithGlobals<GlobalOptions>().json === true);
      const minted = mintToken(name, role);
      if (out.json) out.value({ name, role, token: minted.token, entry: minted.entry });
      else out.line(`token (shown once; give it to the client):\n  ${minted.token}\nadd to API_TOKENS (comma-separated):\n  ${minted.entry}`);
      return EXIT.ok;
    }));

  program
    .command('completion')
    .description('Print a shell completion script: eval "$(rotator completion bash)", or for zsh put `source <(rotator completion zsh)` in ~/.zshrc')
    .addArgument(new Argument('<shell>', 'the shell').choices(['bash', 'zsh']))
    .action(act((shell: 'bash' | 'zsh') => {
      process.stdout.write(completionScript(program, shell));
      return EXIT.ok;
    }));

  return { program, exitCode: () => exitCode };
}

/**
 * Parse and run: the exit code. Usage errors (commander's, and our own checks) are one line on
 * stderr with exit 2; API errors one line with the code of their status; with --json, an API error
 * body also goes to stdout so a script can read its `error.code` (or the `id` of a 409).
 */
export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const { program, exitCode } = buildProgram(deps);
  const json = argv.includes('--json');
  for (const cmd of allCommands(program)) {
    cmd.exitOverride();
    cmd.configureOutput({
      ...(deps.writeOut ? { writeOut: deps.writeOut } : {}),
      ...(deps.writeErr ? { writeErr: deps.writeErr } : {}),
      outputError: (str, write) => write(`rotator: ${str.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim()} (see: ${fullName(cmd)} --help)\n`),
    });
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode();
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.ok;
      // `rotator` or `rotator batch` alone: the help went to stderr; that is a usage error.
      return EXIT.usage;
    }
    if (err instanceof CliError) {
      // Ctrl-C: the entry point says so, once.
      if (err.code === EXIT.interrupted) return err.code;
      if (json && err.body !== undefined) process.stdout.write(`${JSON.stringify(err.body)}\n`);
      process.stderr.write(`rotator: ${err.message}\n`);
      return err.code;
    }
    process.stderr.write(`rotator: unexpected error: ${(err as Error).message ?? String(err)}\n`);
    return EXIT.apiError;
  }
}

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}

function fullName(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

function credentialRef(v: string): { accountSid: string; name: string } {
  const [sid, name, ...rest] = v.split('/');
  if (!sid || !ACCOUNT_SID.test(sid) || !name || !CREDENTIAL_NAME.test(name) || rest.length) throw new InvalidArgumentError(`"${v}" is not AC…/name (an account SID, a slash, a credential name)`);
  return { accountSid: sid, name };
}

async function readPages<T>(client: ApiClient, path: string, query: Record<string, string | number | boolean | undefined>, all: boolean, before: T[] = []): Promise<{ items: T[]; nextCursor: string | null }> {
  if (!all) {
    const page = await client.json<{ items: T[]; nextCursor: string | null }>(path, { query });
    return { ...page, items: [...before, ...page.items] };
  }
  const items = [...before];
  for await (const page of client.pages<T>(path, query)) items.push(...page);
  return { items, nextCursor: null };
}

function moreNote(out: Output, nextCursor: string | null): void {
  if (nextCursor) out.note(`more: --cursor ${nextCursor} (or --all)`);
}

function finishRotation(out: Output, rec: RotationView): ExitCode {
  const ok = rec.status === 'succeeded';
  if (!out.json) {
    const keys = rec.dryRun ? 'dry run: nothing changed' : `new key ${rec.newKeySid ?? '-'}${rec.oldKeySid ? `, old key ${rec.oldKeySid} deleted` : ''}`;
    out.line(ok ? `rotation ${rec.id} succeeded: ${keys}` : `rotation ${rec.id} ${rec.status}${rec.error ? `: ${rec.error.message} [${rec.error.code}]` : ''}`);
  }
  return ok ? EXIT.ok : EXIT.failed;
}

function finishBatch(out: Output, b: BatchView): ExitCode {
  if (!out.json) out.line(`batch ${b.id} ${b.status}: ${b.counts.succeeded} succeeded, ${b.counts.failed} failed, ${b.counts.cancelled} cancelled, ${b.counts.skipped} skipped of ${b.total}${b.halt ? ` (halted in wave ${b.halt.wave}: ${b.halt.reason})` : ''}`);
  return batchSettled(b) && b.status === 'completed' ? EXIT.ok : EXIT.failed;
}

function rotationDetail(r: RotationView & Record<string, unknown>): string {
  const err = r.error ? `${r.error.message} [${r.error.code}]` : undefined;
  const undo = r.undoRequested as { action: string; by: string | null } | null | undefined;
  return [
    fields([
      ['rotation', r.id],
      ['credential', credentialId(r.accountSid, r.credential)],
      ['status', `${r.status} (step ${r.step})`],
      ['old key', r.oldKeySid],
      ['new key', r.newKeySid],
      ['reason', r.reason as string | null],
      ['trigger', `${r.trigger as string}${r.requestedBy ? ` by ${r.requestedBy as string}` : ''}`],
      ['created', when(r.createdAt as string)],
      ['finished', when(r.finishedAt as string | null)],
      ...(r.dryRun ? [['dry run', true] as [string, boolean]] : []),
      ...(r.urgent ? [['urgent', `drain ${r.drainSeconds as number} s`] as [string, string]] : []),
      ...(undo ? [['undo requested', `${undo.action}${undo.by ? ` by ${undo.by}` : ''}`] as [string, string]] : []),
      ...(err ? [['error', err] as [string, string]] : []),
    ]),
    '',
    'history:',
    ...r.history.map((e) => `  ${when(e.at)}  ${stepLine(e).slice(14)}`),
  ].join('\n');
}

interface AccountRow {
  accountSid: string;
  friendlyName: string;
  status: string;
  currentKeySid: string | null;
  keyAgeDays: number;
  lastRotatedAt: string | null;
  nextRotationAt: string;
  overdue: boolean;
}

interface AccountDetail {
  accountSid: string;
  friendlyName: string;
  status: string;
  labels: string[];
  paused: boolean;
  policyOverride: string | null;
  credentials: Array<{ name: string; currentKeySid: string | null; keyAgeDays: number; policy: { name: string; source: string }; deadline: string | null; nextRotationAt: string | null; notScheduled: string | null; overdue: boolean; paused: boolean }>;
}

function accountDetail(a: AccountDetail): string {
  return [
    fields([
      ['account', a.accountSid],
      ['name', a.friendlyName],
      ['status', a.status],
      ['labels', a.labels.join(', ')],
      ['policy override', a.policyOverride],
      ['paused', a.paused],
    ]),
    '',
    table(
      ['credential', 'current key', 'age (d)', 'policy', 'deadline', 'next rotation', 'overdue', 'paused'],
      a.credentials.map((c) => [c.name, c.currentKeySid, c.keyAgeDays, `${c.policy.name} (${c.policy.source})`, when(c.deadline), c.nextRotationAt ? when(c.nextRotationAt) : (c.notScheduled ?? '-'), c.overdue, c.paused]),
    ),
  ].join('\n');
}

interface PolicyRow {
  name: string;
  interval: string;
  maxKeyAge?: string;
  labels?: string[];
  windows?: unknown[];
  blackouts?: unknown[];
  exclude?: boolean;
  autoRotate?: boolean;
  builtIn: boolean;
  overrides: number;
}

function policyTable(items: PolicyRow[]): string {
  return table(
    ['name', 'interval', 'max key age', 'labels', 'windows', 'blackouts', 'auto', 'built in', 'overrides'],
    items.map((p) => [p.name, p.interval, p.maxKeyAge, p.labels?.join(','), p.windows?.length ?? 0, p.blackouts?.length ?? 0, p.exclude ? 'excluded' : p.autoRotate !== false, p.builtIn, p.overrides]),
  );
}

interface ComplianceReport {
  scan: { lastFinishedAt: string | null; running: { startedAt: string } | null };
  summary: { credentials: number; withinPolicy: number; withinPolicyPercent: number | null; overdue: number; oldestKeyAgeDays: number | null; sprawlKeys: number; leftoverKeys: number } | null;
  section: string;
  items: Array<Record<string, unknown>>;
  nextCursor: string | null;
}

function complianceText(r: ComplianceReport): string {
  const s = r.summary;
  const head = [
    `last scan: ${r.scan.lastFinishedAt ? when(r.scan.lastFinishedAt) : 'never (an admin may start one: POST /v1/compliance/scan)'}${r.scan.running ? ' (one is running)' : ''}`,
    s ? `fleet: ${s.withinPolicy}/${s.credentials} credentials within policy${s.withinPolicyPercent !== null ? ` (${s.withinPolicyPercent}%)` : ''}, ${s.overdue} overdue, oldest key ${cell(s.oldestKeyAgeDays)} d, ${s.sprawlKeys} sprawl keys, ${s.leftoverKeys} leftover keys` : 'fleet: no totals until the first scan',
    '',
  ];
  if (r.section === 'subaccounts') {
    const rows = r.items as Array<{ accountSid: string; friendlyName: string; status: string; keysAtTwilio: number | null; sprawl: unknown[]; leftover: unknown[]; finding: string | null }>;
    return [...head, table(['account', 'name', 'status', 'keys at twilio', 'sprawl', 'leftover', 'finding'], rows.map((a) => [a.accountSid, a.friendlyName, a.status, a.keysAtTwilio ?? 'not listed', a.sprawl.length, a.leftover.length, a.finding]))].join('\n');
  }
  const rows = r.items as Array<{ accountSid: string; credential: string; policy: string; keyAgeDays: number | null; allowedKeyAgeDays: number; lastRotationAt: string | null; lastRotationOutcome: string | null; nextDueAt: string | null; overdue: boolean; finding: string | null }>;
  return [
    ...head,
    table(
      ['credential', 'policy', 'key age (d)', 'allowed (d)', 'last rotation', 'due', 'overdue', 'finding'],
      rows.map((c) => [credentialId(c.accountSid, c.credential), c.policy, c.keyAgeDays, c.allowedKeyAgeDays, c.lastRotationAt ? `${when(c.lastRotationAt)} ${c.lastRotationOutcome ?? ''}`.trim() : '-', when(c.nextDueAt), c.overdue, c.finding]),
    ),
  ].join('\n');
}

interface ScheduleView {
  paused: { at: string; by: string; reason: string } | null;
  tickSeconds: number;
  maxStartsPerTick: number;
  lastTick: { at: string; started: number } | null;
  stalled: boolean;
  scheduled: number;
  dueNow: number;
  overdue: number;
  inFlight: number;
  failing: { count: number };
  forecast: { days: number; items: Array<{ date: string; count: number; byPolicy: Record<string, number> }> };
}

function scheduleText(s: ScheduleView): string {
  return [
    fields([
      ['planner', s.paused ? `PAUSED by ${s.paused.by} at ${when(s.paused.at)}: ${s.paused.reason}` : s.stalled ? 'STALLED: no tick for three intervals (is a worker running with PLANNER_ENABLED?)' : 'running'],
      ['tick', `every ${s.tickSeconds} s, at most ${s.maxStartsPerTick} starts${s.lastTick ? `; last ${when(s.lastTick.at)} (started ${s.lastTick.started})` : '; none yet'}`],
      ['scheduled', s.scheduled],
      ['due now', s.dueNow],
      ['overdue', s.overdue],
      ['in flight', s.inFlight],
      ['held after failure', s.failing.count],
    ]),
    '',
    `forecast, next ${s.forecast.days} days (UTC):`,
    table(['date', 'rotations', 'by policy'], s.forecast.items.map((d) => [d.date, d.count, Object.entries(d.byPolicy).map(([p, n]) => `${p} ${n}`).join(', ')])),
  ].join('\n');
}

function batchText(b: BatchView & Record<string, unknown>): string {
  return [
    fields([
      ['batch', b.id],
      ['status', b.status],
      ['reason', b.reason as string],
      ['credentials', b.total],
      ['done', `${b.counts.succeeded} succeeded, ${b.counts.failed} failed, ${b.counts.cancelled} cancelled, ${b.counts.skipped} skipped, ${b.counts.inFlight} in flight`],
      ['wave', `${b.currentWave} of ${b.progress.length}`],
      ...(b.halt ? [['halted', `wave ${b.halt.wave}: ${b.halt.reason}`] as [string, string]] : []),
      ['created', when(b.createdAt as string)],
      ['finished', when(b.finishedAt)],
    ]),
    '',
    table(['wave', 'size', 'started', 'ok', 'failed', 'cancelled', 'skipped', 'in flight'], b.progress.map((w) => [w.wave, w.size, w.started, w.succeeded, w.failed, w.cancelled, w.skipped, w.inFlight])),
  ].join('\n');
}
