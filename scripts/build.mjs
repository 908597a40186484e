#!/usr/bin/env node
// The release build, in plain JavaScript because it runs before anything is compiled and where
// no TypeScript runner is installed (production installs have no dev dependencies).
//
//   node scripts/build.mjs             `npm run build`: dist/ anew (tsc -p tsconfig.build.json,
//                                      source maps on), then the files tsc does not copy (Lua).
//   node scripts/build.mjs --if-stale  before `npm start|api|worker` and the CLI scripts: build
//                                      only when dist/ is missing or older than a source file.
//                                      Where the sources or TypeScript are absent (an image, a
//                                      release directory, `npm ci --omit=dev`), it never builds:
//                                      dist/ is what was shipped, and a missing one is one line.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const stamp = join(dist, '.build-stamp');
// What tsconfig.build.json compiles, and the run-time files beside the sources that tsc does not
// copy, read through import.meta.url: src/state/*.lua and the dashboard's browser files
// (src/dashboard/public, served as they are).
const SOURCE_DIRS = ['src', 'workers', 'providers'];
const isAsset = (f) => /\.lua$/.test(f) || relative(root, f).split(/[\\/]/).slice(0, 3).join('/') === 'src/dashboard/public';
const INPUTS = ['tsconfig.json', 'tsconfig.build.json', 'package.json'];

function* files(dir) {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else yield path;
  }
}

function newestSourceMs() {
  let newest = 0;
  for (const dir of SOURCE_DIRS) for (const f of files(join(root, dir))) if (/\.ts$/.test(f) || isAsset(f)) newest = Math.max(newest, statSync(f).mtimeMs);
  for (const f of INPUTS) if (existsSync(join(root, f))) newest = Math.max(newest, statSync(join(root, f)).mtimeMs);
  return newest;
}

function typescriptCompiler() {
  try {
    return createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');
  } catch {
    return undefined;
  }
}

function build() {
  const tsc = typescriptCompiler();
  if (!tsc) {
    console.error('build: TypeScript is not installed (a production install has no dev dependencies): run `npm ci` first, then `npm run build`');
    process.exit(1);
  }
  rmSync(dist, { recursive: true, force: true });
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });
  if (r.status !== 0) {
    console.error('build: tsc failed (above); dist/ is incomplete');
    process.exit(r.status ?? 1);
  }
  let assets = 0;
  for (const dir of SOURCE_DIRS) {
    for (const f of files(join(root, dir))) {
      if (!isAsset(f)) continue;
      const to = join(dist, relative(root, f));
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(f, to);
      assets++;
    }
  }
  writeFileSync(stamp, `${new Date().toISOString()}\n`);
  return assets;
}

const ifStale = process.argv.includes('--if-stale');
const haveSources = existsSync(join(root, 'src', 'main.ts'));
const built = existsSync(stamp);

if (!ifStale) {
  const assets = build();
  console.error(`build: dist/ written (${assets} Lua and dashboard files copied beside the compiled code)`);
} else if (!haveSources || !typescriptCompiler()) {
  // A release: run what was shipped.
  if (!built) {
    console.error('dist/ is missing: this install has no compiled release. Run `npm ci && npm run build` in a clone of the repository (or `npm run dev` to run the sources with tsx)');
    process.exit(1);
  }
} else if (!built || statSync(stamp).mtimeMs < newestSourceMs()) {
  console.error(built ? 'build: sources changed since the last build: compiling dist/ first' : 'build: no dist/ yet: compiling it first (once; `npm run dev` runs the sources directly)');
  build();
}
