import Table from 'cli-table3';

/**
 * Human output: borderless, left-aligned columns (as kubectl prints), header in capitals. Scripts
 * use --json instead; this layout may change between versions.
 */
export function table(head: string[], rows: Array<Array<string | number | boolean | null | undefined>>): string {
  const t = new Table({
    head: head.map((h) => h.toUpperCase()),
    chars: { top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '   ' },
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 },
  });
  for (const r of rows) t.push(r.map(cell));
  return t.toString().split('\n').map((l) => l.trimEnd()).join('\n');
}

/** `key: value` lines, keys padded to one column. */
export function fields(pairs: Array<[string, string | number | boolean | null | undefined]>): string {
  const width = Math.max(...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)} ${cell(v)}`).join('\n');
}

export function cell(v: string | number | boolean | null | undefined): string {
  if (v === null || v === undefined || v === '') return '-';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return String(v);
}

/** An ISO instant as `2026-12-07 18:40:12Z`: readable and still unambiguous. */
export function when(iso: string | null | undefined): string {
  if (!iso) return '-';
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** `AC…/name`, the short name of a managed credential. */
export function credentialId(accountSid: string, name: string | undefined): string {
  return `${accountSid}/${name ?? 'default'}`;
}
