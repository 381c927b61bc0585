#!/usr/bin/env bash
# tools.sh installs the lint tools at pinned versions into bin/tools with
# `go install` (only the Go module proxy is needed) and prints that
# directory. A tool already there at its version is not rebuilt.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# Pinned versions: change them here, deliberately.
STATICCHECK_VERSION=v0.8.2 # honnef.co/go/tools
DEADCODE_VERSION=v0.52.0   # golang.org/x/tools

dir="$REPO_ROOT/bin/tools"
mkdir -p "$dir"
install_tool() { # name module version
	local stamp="$dir/.$1-$3"
	if [ -x "$dir/$1" ] && [ -f "$stamp" ]; then
		return
	fi
	GOBIN="$dir" go install "$2@$3" >&2
	rm -f "$dir/.$1-"*
	touch "$stamp"
}
install_tool staticcheck honnef.co/go/tools/cmd/staticcheck "$STATICCHECK_VERSION"
install_tool deadcode golang.org/x/tools/cmd/deadcode "$DEADCODE_VERSION"
echo "$dir"
