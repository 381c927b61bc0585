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
# Go minimizes each new interesting input before it reports the executions
# that did so: "0/sec" for seconds, then a burst. A minimization under way
# when -fuzztime ends runs on to -fuzzminimizetime (60 s by default), which
# looked like a hung worker (FuzzCursors, whose inputs go through HTTP and
# Postgres and start from a 5,000-byte cursor); 10 s bounds that tail.
minimizetime="${FUZZMINIMIZETIME:-10s}"
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "== $pkg $name ($fuzztime)"
	go test "$pkg" -run "^${name}\$" -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimizetime" -parallel 1
done
