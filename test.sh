#!/usr/bin/env bash
# Runs every test: Go (unit, end-to-end, the Rego policy tests through OPA's
# runner, bounded fuzzing), the OPA CLI's own checks on policies/, and the
# Angular unit and browser tests where web/ is present. Tests that need a
# program this machine lacks skip with a reason, except under CI=true.
set -euo pipefail
cd "$(dirname "$0")"

echo "== policies: opa fmt, check --strict, test --coverage"
go tool opa fmt --list --fail policies/
go tool opa check --strict policies/
go tool opa test --coverage --threshold 95 policies/ >/dev/null
go tool opa test policies/

if command -v npm >/dev/null && [ ! -d server/identity/testdata/oidc-provider/node_modules ]; then
  echo "== npm ci: the OpenID provider the identity tests run"
  npm ci --no-audit --no-fund --prefix server/identity/testdata/oidc-provider
fi

echo "== go vet"
go vet ./...

echo "== go test"
go test -count=1 ./...

# Bounded fuzzing: each target for FUZZTIME (10 s), about two minutes in
# all. Only under CI or FUZZ=1, so the default local run stays fast; the
# seed corpora under testdata/fuzz run in every `go test` above.
if [ "${CI:-}" = "true" ] || [ "${FUZZ:-}" = "1" ]; then
  echo "== go fuzz (${FUZZTIME:-10s} each)"
  fuzz() {
    local pkg=$1
    shift
    for target in "$@"; do
      go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-10s}" \
        -fuzzminimizetime 200x "$pkg"
    done
  }
  fuzz ./server/ FuzzResolveAPI FuzzResolveUI FuzzParseChecks FuzzAuthZEN
  fuzz ./server/identity/ FuzzBearerToken FuzzIDTokenHeader FuzzVerify
fi

if [ -x web/test.sh ]; then
  echo "== web"
  web/test.sh
fi
