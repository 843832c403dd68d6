#!/usr/bin/env bash
# The web part of tierguard's tests: install the pinned packages, build the
# library and the demo app, run the library's unit tests (Vitest, no
# browser), then the browser end-to-end tests against a real
# `tierguard serve --dev` (skipped with a reason where chromium is missing,
# except under CI=true).
#
# Usage: web/test.sh            (from anywhere)
#        SKIP_NPM_CI=1 web/test.sh   to reuse node_modules as they are
set -euo pipefail
cd "$(dirname "$0")"
export NG_CLI_ANALYTICS=false
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

start=$(date +%s)
step() { printf '\n== web: %s (%ss)\n' "$1" "$(( $(date +%s) - start ))"; }
logs=$(mktemp -d)
current=setup
trap 'rc=$?; rm -rf "$logs"; if [ $rc -ne 0 ]; then echo "web: FAILED at: $current (after $(( $(date +%s) - start ))s)"; fi' EXIT

if ! command -v node >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    echo "web: node is required under CI=true" >&2
    exit 1
  fi
  echo "web: skipped: node is not installed (Node 20.19+ runs Angular 21)"
  exit 0
fi

if [ -z "${SKIP_NPM_CI:-}" ]; then
  current="npm ci"; step "npm ci"
  npm ci --no-audit --no-fund
fi

current="build the library"; step "build @tierguard/angular"
npx ng build tierguard-angular
current="build the demo app"; step "build the demo app (dist/demo/browser)"
npx ng build demo

current="unit tests"; step "unit tests (Vitest, jsdom)"
npx ng test tierguard-angular --watch=false --no-progress | tee "$logs/unit"

current="browser e2e"; step "browser e2e (playwright-core, chromium)"
node --test e2e/story.test.mjs | tee "$logs/e2e"

# One closing line over both runners.
count() { sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -Eo "$2" | grep -Eo '[0-9]+' | tail -1 || true; }
unit=$(count "$logs/unit" 'Tests +[0-9]+ passed')
e2e=$(count "$logs/e2e" '^# pass [0-9]+')
skipped=$(count "$logs/e2e" '^# skipped [0-9]+')
step "done"
echo "web: unit ${unit:-0} passed; browser ${e2e:-0} passed, ${skipped:-0} skipped; $(( $(date +%s) - start ))s"
echo "$(( ${unit:-0} + ${e2e:-0} )) passed, 0 failed, ${skipped:-0} skipped"
