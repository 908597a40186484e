import { runPeriodically, type Periodic } from './periodic.ts';
import { randomUUID } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { AuditRetentionConfig } from '../config.ts';
import { canonicalJson, chainHash, GENESIS, signCheckpoint, type AuditCheckpoint, type AuditFields } from '../state/audit.ts';
import { redisKeys } from '../state/keys.ts';
import { runScript } from '../state/lua.ts';

/**
 * A bounded audit trail (issue 18): entries older than AUDIT_RETENTION_DAYS are exported, then
 * removed behind a signed checkpoint entry, so the stream stays bounded and still verifies.
 *
 * Order, for crash safety: (1) read the entries past retention; (2) write them as JSON lines to a
 * new file in AUDIT_EXPORT_DIR, fsync it, rename it into place, fsync the directory — or write
 * them to standard output for a log shipper; (3) in one script, append the checkpoint (hash of the
 * last exported entry, signed with AUDIT_CHECKPOINT_KEY) and trim up to that entry. A crash
 * before (3) leaves the stream untouched and an export that the next run repeats (a later file
 * covers the same entries again; verification reads each entry once). A crash after (3) has
 * nothing left to repeat: the script refuses a trim whose last entry is gone.
 */
export interface AuditRetentionOptions {
  redis: Redis;
  prefix: string;
  log: Logger;
  cfg: AuditRetentionConfig;
  onTrimmed?: (count: number) => void;
  now?: () => number;
  /** Where `-` writes (tests): file descriptor 1 by default. */
  stdoutFd?: number;
  /** At most this many entries per export file and checkpoint. */
  chunk?: number;
}

const CHECKPOINT = readFileSync(new URL('../state/lua/audit-checkpoint.lua', import.meta.url), 'utf8');
const EXTEND = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const LEASE_MS = 60_000;

type Row = [string, string[]];

export interface TrimResult {
  trimmed: number;
  /** Export files written (or `stdout`). */
  exports: string[];
  checkpoints: string[];
}

export class AuditRetention {
  readonly #o: AuditRetentionOptions & { now: () => number; chunk: number };
  readonly #k: ReturnType<typeof redisKeys>;
  readonly #leaseKey: string;
  readonly #token = randomUUID();
  #loop: Periodic | undefined;

  constructor(opts: AuditRetentionOptions) {
    if (!opts.cfg.checkpointKey || !opts.cfg.exportTo) throw new Error('audit retention needs AUDIT_CHECKPOINT_KEY and AUDIT_EXPORT_DIR');
    this.#o = { now: Date.now, chunk: 10_000, ...opts };
    this.#k = redisKeys(opts.prefix);
    this.#leaseKey = `${this.#k.audit}:trim:lease`;
  }

  start(): void {
    this.#loop = runPeriodically(() => this.#leased(() => this.trim()), {
      firstMs: 0,
      everyMs: this.#o.cfg.intervalMs,
      onError: (err) => this.#o.log.warn({ err: { message: err.message } }, 'audit retention: trim failed; trying again at the next interval'),
    });
  }

  async stop(): Promise<void> {
    await this.#loop?.stop();
    this.#loop = undefined;
  }

  /** One process trims at a time (a lease), so two never export and checkpoint the same range. */
  async #leased<T>(fn: () => Promise<T>): Promise<T | undefined> {
    const { redis } = this.#o;
    if ((await redis.set(this.#leaseKey, this.#token, 'PX', LEASE_MS, 'NX')) !== 'OK') return undefined;
    const renew = setInterval(() => void runScript(redis, EXTEND, 1, this.#leaseKey, this.#token, String(LEASE_MS)).catch(() => undefined), LEASE_MS / 3);
    renew.unref();
    try {
      return await fn();
    } finally {
      clearInterval(renew);
      await redis.eval(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`, 1, this.#leaseKey, this.#token).catch(() => undefined);
    }
  }

  /** Export and trim every entry older than the retention (in chunks); the caller holds the lease or is alone. */
  async trim(): Promise<TrimResult> {
    const result: TrimResult = { trimmed: 0, exports: [], checkpoints: [] };
    const cutoffMs = this.#o.now() - this.#o.cfg.days * 86_400_000;
    for (;;) {
      // Entries strictly older than the cutoff. The checkpoint is appended before the trim, so the stream is never left empty.
      const rows = (await this.#o.redis.xrange(this.#k.audit, '-', `(${Math.max(0, Math.floor(cutoffMs))}-0`, 'COUNT', this.#o.chunk)) as Row[];
      if (rows.length === 0) return result;
      const done = await this.#trimChunk(rows);
      if (!done) return result;
      result.trimmed += done.trimmed;
      result.exports.push(done.exportedTo);
      result.checkpoints.push(done.checkpointId);
      this.#o.onTrimmed?.(done.trimmed);
      this.#o.log.info({ trimmed: done.trimmed, through: rows.at(-1)![0], exportedTo: done.exportedTo, checkpoint: done.checkpointId }, 'audit retention: exported and trimmed entries past retention');
      if (rows.length < this.#o.chunk) return result;
    }
  }

  async #trimChunk(rows: Row[]): Promise<{ trimmed: number; exportedTo: string; checkpointId: string } | undefined> {
    const { redis, cfg } = this.#o;
    const last = rows.at(-1)!;
    const lastId = last[0];
    const lastHash = fieldOf(last[1], 'hash') ?? '';
    const lines = rows.map(([id, f]) => exportLine(id, f));
    const exportedTo = this.#export(rows[0]![0], lastId, lines);
    const firstKept = nextStreamId(lastId);
    for (let attempt = 0; attempt < 10; attempt++) {
      const at = new Date(this.#o.now()).toISOString();
      const cp: Omit<AuditCheckpoint, 'sig'> = { trimmedThrough: lastId, trimmedHash: lastHash, trimmedCount: rows.length, exportedTo };
      const body: AuditFields & { at: string } = { kind: 'checkpoint', actor: 'system', action: 'audit.checkpoint', detail: `${rows.length} entries through ${lastId} exported to ${exportedTo} and trimmed`, checkpoint: { ...cp, sig: signCheckpoint(cfg.checkpointKey!.reveal(), cp, at) }, at };
      const json = canonicalJson(body);
      const head = (await redis.get(this.#k.auditHead)) || GENESIS;
      const reply = (await runScript(redis, CHECKPOINT, 2, this.#k.audit, this.#k.auditHead, head, GENESIS, json, chainHash(head, json), lastId, lastHash, firstKept)) as Array<number | string>;
      if (reply[0] === 1) return { trimmed: Number(reply[2]), exportedTo, checkpointId: String(reply[1]) };
      if (reply[0] === 2) {
        this.#o.log.warn({ through: lastId }, 'audit retention: the entries were trimmed already (a repeated run); nothing to do');
        return undefined;
      }
      // Another entry was appended meanwhile: hash against the new head.
    }
    throw new Error('the audit chain kept moving while the checkpoint was appended; trying again at the next interval');
  }

  /** Durable before returning: a file fsynced, renamed into place and its directory fsynced; or written to stdout. */
  #export(firstId: string, lastId: string, lines: string[]): string {
    const text = lines.map((l) => `${l}\n`).join('');
    const to = this.#o.cfg.exportTo!;
    if (to === '-') {
      const fd = this.#o.stdoutFd ?? 1;
      writeAll(fd, text);
      // A file or a pipe: fsync makes a file durable; a pipe has nothing to sync (the shipper owns it).
      try {
        fsyncSync(fd);
      } catch {
        // EINVAL on a pipe or a terminal.
      }
      return 'stdout';
    }
    mkdirSync(to, { recursive: true, mode: 0o700 });
    const name = `audit-${firstId}_${lastId}.jsonl`;
    const tmp = join(to, `.${name}.${process.pid}.tmp`);
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeAll(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(to, name));
    const dir = openSync(to, 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    return name;
  }
}

function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

/** One export line: the entry as GET /v1/audit/export writes it (its fields, id, prev and hash). */
function exportLine(id: string, fields: string[]): string {
  const body = JSON.parse(fieldOf(fields, 'e') ?? '{}') as Record<string, unknown>;
  return JSON.stringify({ ...body, id, prev: fieldOf(fields, 'prev') ?? '', hash: fieldOf(fields, 'hash') ?? '' });
}

/** The smallest stream id after `id` (XTRIM MINID keeps ids ≥ it). */
function nextStreamId(id: string): string {
  const [ms, seq] = id.split('-') as [string, string];
  return `${ms}-${BigInt(seq) + 1n}`;
}

function fieldOf(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}
