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

if ! command -v node >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    echo "web: node is required under CI=true" >&2
    exit 1
  fi
  echo "web: skipped: node is not installed (Node 20.19+ runs Angular 21)"
  exit 0
fi

if [ -z "${SKIP_NPM_CI:-}" ]; then
  step "npm ci"
  npm ci --no-audit --no-fund
fi

step "build @tierguard/angular"
npx ng build tierguard-angular
step "build the demo app (dist/demo/browser)"
npx ng build demo

step "unit tests (Vitest, jsdom)"
npx ng test tierguard-angular --watch=false

step "browser e2e (playwright-core, chromium)"
node --test e2e/story.test.mjs

step "done"
echo "web: all steps passed in $(( $(date +%s) - start ))s"
