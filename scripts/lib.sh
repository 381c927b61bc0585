# shellcheck shell=bash
# Helpers shared by the scripts in this folder. Source it; do not run it.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# After sourcing: REPO_ROOT is the repository root, `go` is on PATH when
# /usr/local/go/bin/go exists, and log/die/as_root/apt_install are defined.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

# The Go tarball installs to /usr/local/go without touching PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	PATH="/usr/local/go/bin:$PATH"
	export PATH
fi

_self="$(basename "$0")"

# log prints one line about an action taken, on stderr.
log() { printf '%s: %s\n' "$_self" "$*" >&2; }

# die prints one line and stops the script.
die() {
	printf '%s: error: %s\n' "$_self" "$*" >&2
	exit 1
}

# as_root runs a command as root: directly when we are root, through sudo
# when sudo exists, and otherwise fails with a clear message.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run '$*' (not root and sudo is not installed)"
	fi
}

_apt_updated=""

# apt_install installs Debian packages quietly: `apt-get update` once per
# script run, then `apt-get install -y`. Output goes to a log that is shown
# only when something fails.
apt_install() {
	command -v apt-get >/dev/null 2>&1 ||
		die "cannot install $* automatically: apt-get not found (install it with your package manager)"
	local aptlog
	aptlog="$(mktemp "${TMPDIR:-/tmp}/mocd-apt.XXXXXX")"
	if [ -z "$_apt_updated" ]; then
		log "apt-get update"
		if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$aptlog" 2>&1; then
			tail -n 20 "$aptlog" >&2
			rm -f "$aptlog"
			die "apt-get update failed"
		fi
		_apt_updated=1
	fi
	log "apt-get install $*"
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >"$aptlog" 2>&1; then
		tail -n 20 "$aptlog" >&2
		rm -f "$aptlog"
		die "apt-get install $* failed"
	fi
	rm -f "$aptlog"
}
