#!/usr/bin/env bash
# openapi-lint.sh checks openapi/openapi.yaml with Redocly CLI, pinned in
# tools/openapi/package-lock.json: valid OpenAPI 3.1, every rule of
# recommended-strict (tools/openapi/redocly.yaml), examples matching their
# schemas. It also checks that the Redoc bundle served at /docs is byte for
# byte the one of the pinned redoc package.
#
#   scripts/openapi-lint.sh
#
# The tools install with `npm ci` into tools/openapi/node_modules (git-ignored),
# again only when package-lock.json changes. Go-side checks of the same
# document run in `go test ./openapi/ ./api/`.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tools="$REPO_ROOT/tools/openapi"
command -v npm >/dev/null 2>&1 ||
	die "npm not found: install Node.js 20.19+ with npm (Debian: apt-get install nodejs npm) to lint the OpenAPI document"

# Redocly CLI would otherwise send usage telemetry and look for updates.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true

stamp="$tools/node_modules/.mocd-lock.sha256"
want="$(sha256sum "$tools/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
	log "npm ci in tools/openapi"
	npmlog="$(mktemp "${TMPDIR:-/tmp}/mocd-npm.XXXXXX")"
	if ! (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error) >"$npmlog" 2>&1; then
		tail -n 30 "$npmlog" >&2
		rm -f "$npmlog"
		die "npm ci in tools/openapi failed"
	fi
	rm -f "$npmlog"
	echo "$want" >"$stamp"
fi

cd "$tools"
node_modules/.bin/redocly lint --config redocly.yaml --format=stylish ../../openapi/openapi.yaml

for f in redoc.standalone.js redoc.standalone.js.LICENSE.txt; do
	if ! cmp -s "node_modules/redoc/bundles/$f" "../../openapi/assets/$f"; then
		die "openapi/assets/$f is not the file of the pinned redoc package; copy it: cp tools/openapi/node_modules/redoc/bundles/$f openapi/assets/ (and set openapi.RedocVersion)"
	fi
done
redoc_version="$(node -p 'require("redoc/package.json").version')"
grep -q "RedocVersion = \"$redoc_version\"" ../../openapi/assets.go ||
	die "openapi.RedocVersion in openapi/assets.go is not $redoc_version, the pinned redoc release"
echo "openapi-lint: openapi/openapi.yaml passes Redocly CLI $(node_modules/.bin/redocly --version 2>/dev/null); the Redoc bundle matches redoc $redoc_version"
