#!/usr/bin/env bash
# Runs every native fuzz target of mocd for FUZZTIME each (default 60s), one
# after the other with one worker, so that a shared machine stays usable.
# A failing input is written to the package's testdata/fuzz/<Target>/ by Go;
# commit it, and `go test` replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-60s}"
targets=(
	"./api FuzzRouteBodies"
	"./api FuzzCursors"
	"./api FuzzTokens"
	"./api FuzzIdempotencyKeys"
	"./api FuzzTimeParameters"
	"./webhook FuzzValidateURL"
	"./webhook FuzzForbiddenIP"
	"./apikey FuzzParse"
)
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "== $pkg $name ($fuzztime)"
	go test "$pkg" -run "^${name}\$" -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel 1
done
