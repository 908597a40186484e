/**
 * The exit codes scripts may rely on (README, "Command line"). One meaning each, stable across
 * versions: a script tells "the rotation failed" from "the API was down" from "I typed it wrong"
 * without reading stderr.
 */
export const EXIT = {
  ok: 0,
  /** The operation ran and did not succeed: a followed rotation failed, was cancelled or rolled back; a followed batch halted or was cancelled; the audit chain is broken. */
  failed: 1,
  /** Bad flags or arguments, or a missing or refused configuration (URL, token, config file): nothing was sent. */
  usage: 2,
  /** The API could not be reached: connection refused, unknown host, TLS failure, timeout. */
  unreachable: 3,
  /** The API refused the credential (401) or its role (403). */
  auth: 4,
  /** The API does not know the rotation, batch, account or policy (404). */
  notFound: 5,
  /** The request conflicts with the current state (409): a rotation in flight, an action that does not apply now. */
  conflict: 6,
  /** The API rejected the request as invalid (400, 413, 415, 422): the message names the field. */
  rejected: 7,
  /** The API failed or is not ready (5xx), is rate limiting (429), or answered something that is not its API. */
  apiError: 8,
  /** Interrupted (Ctrl-C): the convention of 128 + SIGINT. */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A failure the CLI reports as one line on stderr and exits with `code`. */
export class CliError extends Error {
  constructor(
    readonly code: ExitCode,
    message: string,
    /** The API's error body, printed on stdout with --json so a script can read `error.code` or the `id` of a 409. */
    readonly body?: unknown,
  ) {
    super(message);
  }
}

/** The exit code of an API answer's HTTP status (only for statuses that are errors). */
export function exitForStatus(status: number): ExitCode {
  if (status === 401 || status === 403) return EXIT.auth;
  if (status === 404) return EXIT.notFound;
  if (status === 409) return EXIT.conflict;
  if (status === 400 || status === 413 || status === 415 || status === 422) return EXIT.rejected;
  return EXIT.apiError;
}

/** The table in the README and in `rotator --help`. */
export const EXIT_CODE_HELP = `Exit codes:
  0    success
  1    the operation ran and did not succeed (a followed rotation failed, was cancelled or
       rolled back; a followed batch halted or was cancelled; the audit chain is broken)
  2    usage error: bad flags or arguments, missing or refused configuration (nothing sent)
  3    the API could not be reached (connection refused, unknown host, TLS, timeout)
  4    the API refused the token (401) or its role (403)
  5    not found (404)
  6    conflict (409): a rotation in flight, an action that does not apply now
  7    the API rejected the request as invalid (400, 413, 415, 422)
  8    the API failed or is not ready (5xx), rate limited (429), or an unexpected answer
  130  interrupted (Ctrl-C)`;
