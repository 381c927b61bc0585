#!/usr/bin/env bash
# test.sh runs the whole test suite against real PostgreSQL and Redis.
#
#   scripts/test.sh                    # everything
#   scripts/test.sh -run TestRestart   # extra arguments go to `go test`
#   scripts/test.sh ./store/...        # a package path replaces ./...
#
# MOC_TEST_DATABASE_URL is the admin connection the tests use to create their
# own databases; it defaults to the local trust-auth server services.sh sets up.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

command -v go >/dev/null 2>&1 ||
	die "go not found on PATH or in /usr/local/go/bin; install Go (see go.mod for the version) from https://go.dev/dl/"

bash "$REPO_ROOT/scripts/services.sh"

# -race needs cgo, and cgo needs a C compiler (absent on a fresh Debian).
cc="$(go env CC)"
if ! command -v "${cc%% *}" >/dev/null 2>&1; then
	apt_install gcc libc6-dev
fi

export MOC_TEST_DATABASE_URL="${MOC_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"

# Test ./... unless the arguments name packages themselves.
pkgs=(./...)
for arg in "$@"; do
	case "$arg" in
	./* | ../* | github.com/*) pkgs=() ;;
	esac
done

# The whole suite also lints the OpenAPI document with Redocly CLI from the
# npm registry (scripts/openapi-lint.sh); a run of named packages skips it.
if [ ${#pkgs[@]} -gt 0 ]; then
	if command -v npm >/dev/null 2>&1; then
		bash "$REPO_ROOT/scripts/openapi-lint.sh"
	elif [ "${CI:-}" = "true" ]; then
		die "npm not found: CI lints the OpenAPI document; install Node.js 20.19+ with npm"
	else
		log "npm not found: skipping the OpenAPI lint (install Node.js 20.19+ with npm; then make openapi-lint)"
	fi
fi

# The Go SDK is a module of its own (client/), which ./... does not reach.
if [ ${#pkgs[@]} -gt 0 ]; then
	(cd "$REPO_ROOT/client" && go test -race -count=1 -timeout 5m "$@" ./...)
fi

# The whole suite lints first (make lint: gofmt, go vet, staticcheck,
# deadcode); a run of named packages skips it.
if [ ${#pkgs[@]} -gt 0 ]; then
	bash "$REPO_ROOT/scripts/lint.sh"
fi

exec go test -race -count=1 -timeout 12m ${pkgs[@]+"${pkgs[@]}"} "$@"
