/** Where a command writes: results on stdout, progress and errors on stderr. */
export interface Output {
  /** --json: print the API's JSON, nothing else, on stdout. */
  json: boolean;
  /** Whether stderr is a terminal (progress bars only there). */
  errIsTTY: boolean;
  line(text: string): void;
  /** A JSON value on one line (pretty with 2 spaces when stdout is a terminal). */
  value(v: unknown): void;
  note(text: string): void;
}

export function processOutput(json: boolean): Output {
  return {
    json,
    errIsTTY: process.stderr.isTTY === true,
    line: (text) => void process.stdout.write(`${text}\n`),
    value: (v) => void process.stdout.write(`${JSON.stringify(v, null, process.stdout.isTTY ? 2 : undefined)}\n`),
    note: (text) => void process.stderr.write(`${text}\n`),
  };
}
