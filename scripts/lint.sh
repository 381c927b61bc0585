#!/usr/bin/env bash
# lint.sh is `make lint`: gofmt reports nothing, go vet and staticcheck (all
# checks; staticcheck.conf) pass, deadcode -test lists what nothing calls
# (CONTRIBUTING.md says what may stay), shellcheck when installed.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
	echo "gofmt -l: these files need gofmt -w:"
	echo "$unformatted"
	exit 1
fi
go vet ./...
# The Go SDK is a module of its own (client/), which ./... does not reach.
(cd client && go vet ./...)
tools="$(bash scripts/tools.sh)"
"$tools/staticcheck" ./...
# The alert rules and the Prometheus config in deploy/.
bash scripts/promtool.sh
echo "deadcode -test (unreachable from any main or test):"
"$tools/deadcode" -test ./...
if command -v shellcheck >/dev/null 2>&1; then
	shellcheck -x scripts/*.sh .ci/run
else
	echo "lint: shellcheck not installed; skipping the shell scripts"
fi
