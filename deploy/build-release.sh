#!/usr/bin/env bash
# The image's build stage, as a script that CI runs too (no Docker engine there): from a checkout
# whose dependencies are installed (`npm ci`), compile dist/ and assemble in OUT exactly the files
# the runtime stage copies — dist/, package.json, package-lock.json, scripts/build.mjs and the
# production dependencies alone (`npm ci --omit=dev`: no tsx, no TypeScript, no test tools).
#
#   bash deploy/build-release.sh OUT
#
# OUT must not exist or be empty. npm's cache (filled by the `npm ci` before) serves the second
# install, so it fetches nothing new.
set -euo pipefail
out=${1:?usage: deploy/build-release.sh OUT}
cd "$(dirname "$0")/.."

if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
  echo "build-release: $out is not empty" >&2
  exit 1
fi
if [ ! -x node_modules/.bin/tsc ]; then
  echo "build-release: TypeScript is not installed here: run npm ci first" >&2
  exit 1
fi

npm run build
mkdir -p "$out/scripts"
cp -R dist "$out/dist"
cp package.json package-lock.json "$out/"
cp scripts/build.mjs "$out/scripts/"
# package.json's allowScripts decides which install scripts run
# (msgpackr-extract's, which finds its prebuilt binary and builds nothing here).
(cd "$out" && npm ci --omit=dev --no-audit --no-fund --prefer-offline --loglevel=warn)
# Nothing in a release reads these: TypeScript declarations, maps of dependencies, docs.
find "$out/node_modules" \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.md' -o -name '*.markdown' \) -type f -delete
echo "build-release: $out ($(du -sh "$out" | cut -f1): dist $(du -sh "$out/dist" | cut -f1), node_modules $(du -sh "$out/node_modules" | cut -f1))"
