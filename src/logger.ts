import { createRequire } from 'node:module';
import pino, { type DestinationStream, type Logger } from 'pino';
import type * as PinoPretty from 'pino-pretty';

// Loaded only for LOG_FORMAT=pretty: every process start would otherwise pay for its dozen modules.
const load = createRequire(import.meta.url);

/**
 * Structured logs. Secrets are `Secret` values that serialise as [redacted]; redaction here is the
 * second line of defence for anything shaped like a credential that reaches a log call.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  '*.password',
  '*.secret',
  '*.apiKeySecret',
  '*.authToken',
  '*.token',
  'password',
  'secret',
  'apiKeySecret',
  'authToken',
  'token',
];

/**
 * `format: 'pretty'` (LOG_FORMAT=pretty) is for a person at a terminal: one line per entry with its
 * time, level and message, the fields after it, colours on a TTY. Redaction happens before either
 * format. The start-up summary's `startup` object is left out there: its message says it all.
 */
export function createLogger(level: string, destination?: DestinationStream, format: 'json' | 'pretty' = 'json'): Logger {
  let out = destination;
  if (format === 'pretty') {
    const { build: prettyStream, isColorSupported } = load('pino-pretty') as typeof PinoPretty;
    out = prettyStream({
      colorize: !destination && isColorSupported && process.stdout.isTTY,
      singleLine: true,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,startup',
      sync: true,
      ...(destination ? { destination } : {}),
    });
  }
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { pid: process.pid } }, out);
}
