#!/usr/bin/env bash
# dev.sh runs `mocd dev` (migrate + api + worker + the Fly emulator, plain
# HTTP on loopback) after making sure PostgreSQL and Redis are up.
# Arguments go to `mocd dev`.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

command -v go >/dev/null 2>&1 ||
	die "go not found on PATH or in /usr/local/go/bin; install Go (see go.mod for the version) from https://go.dev/dl/"

bash "$REPO_ROOT/scripts/services.sh"

exec go run ./cmd/mocd dev "$@"
