/**
 * Every error Rotator raises carries a stable code and a message an operator can act on.
 * `transient` errors are retried with backoff; permanent ones fail the rotation.
 * Messages never contain secret values.
 */
export class RotatorError extends Error {
  readonly code: string;
  readonly transient: boolean;

  constructor(code: string, message: string, opts: { transient?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'RotatorError';
    this.code = code;
    this.transient = opts.transient ?? false;
  }
}

/** The store (or Twilio) is unreachable or overloaded: retry later. */
export class TransientError extends RotatorError {
  constructor(code: string, message: string, cause?: unknown) {
    super(code, message, { transient: true, cause });
    this.name = 'TransientError';
  }
}

/** Retrying cannot help: a person must change something (credential, permission, input). */
export class PermanentError extends RotatorError {
  constructor(code: string, message: string, cause?: unknown) {
    super(code, message, { transient: false, cause });
    this.name = 'PermanentError';
  }
}

export function isTransient(err: unknown): boolean {
  return err instanceof RotatorError ? err.transient : false;
}

/** A short, secret-free description of any thrown value, for records and logs. */
export function describeError(err: unknown): { code: string; message: string } {
  if (err instanceof RotatorError) return { code: err.code, message: err.message };
  if (err instanceof Error) return { code: 'internal', message: err.message };
  return { code: 'internal', message: String(err) };
}
