import pino, { type DestinationStream, type Logger } from 'pino';

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

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { pid: process.pid } }, destination);
}
