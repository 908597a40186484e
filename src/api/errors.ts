import { describeFieldErrors, type FieldError } from '../domain/credential.ts';

/** An HTTP error with Rotator's body shape: `{error: {code, message}}`. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/**
 * 400 naming every field that is wrong: `{error: {code, message, fields: [{path, message}]}}`, the
 * message listing them all (`labels[2]: …; policy: unknown policy "x" …`) for clients that read one line.
 */
export class FieldsError extends HttpError {
  constructor(
    code: string,
    readonly fields: readonly FieldError[],
  ) {
    super(400, code, describeFieldErrors(fields).slice(0, 2000));
    this.name = 'FieldsError';
  }
}
