#!/usr/bin/env node
// The `rotator` command: the compiled CLI (dist/, from `npm run build`) when it is there, else its
// TypeScript source through tsx (a development checkout, where tsx is installed).
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/src/cli/rotator.js', import.meta.url);
if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(new URL('../src/cli/rotator.ts', import.meta.url).href);
}
