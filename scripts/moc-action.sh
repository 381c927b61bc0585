#!/usr/bin/env bash
# moc-action.sh is the GitHub Action's step (action.yml at the repository
# root): it builds moc from this repository unless MOC_BIN names one, runs
# one lifecycle command with --wait, writes the operation to $GITHUB_OUTPUT
# and exits with moc's code (0 done, 1 the operation failed or was
# cancelled, 2 bad usage, 3 the API refused the call, 4 timed out).
#
# Inputs (action.yml maps its `with:` onto them):
#   INPUT_COMMAND          create | start | stop | restart | delete (default restart)
#   INPUT_INSTANCE         the instance id (every command but create)
#   INPUT_SUBDOMAIN        create: the subdomain;  INPUT_REGION: its Fly region
#   INPUT_IDEMPOTENCY_KEY  default: the commit SHA with the command and the
#                          instance (or subdomain), so a re-run of the same
#                          commit replays the first call instead of repeating it
#   INPUT_WAIT             true (default) | false
#   INPUT_TIMEOUT          how long to wait (default 10m)
#   MOC_TOKEN, MOC_API_URL as for moc itself.
set -euo pipefail

die() {
	echo "moc-action: $*" >&2
	exit 2
}

command="${INPUT_COMMAND:-restart}"
instance="${INPUT_INSTANCE:-}"
subdomain="${INPUT_SUBDOMAIN:-}"
region="${INPUT_REGION:-}"
timeout="${INPUT_TIMEOUT:-10m}"
wait="${INPUT_WAIT:-true}"
key="${INPUT_IDEMPOTENCY_KEY:-}"
action_path="${GITHUB_ACTION_PATH:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

[ -n "${MOC_TOKEN:-}" ] || die "no token: pass the action a token (with: token: \${{ secrets.MOC_TOKEN }})"

args=(instances "$command")
subject=""
case "$command" in
create)
	[ -n "$subdomain" ] || die "create needs a subdomain"
	args+=(--subdomain "$subdomain")
	[ -z "$region" ] || args+=(--region "$region")
	subject="$subdomain"
	;;
start | stop | restart | delete)
	[ -n "$instance" ] || die "$command needs an instance id"
	args+=("$instance")
	subject="$instance"
	;;
*) die "unknown command \"$command\": want create, start, stop, restart or delete" ;;
esac

case "$wait" in
true) args+=(--wait --timeout "$timeout") ;;
false) ;;
*) die "wait must be true or false, not \"$wait\"" ;;
esac

if [ -z "$key" ] && [ -n "${GITHUB_SHA:-}" ]; then
	# One key per commit and call: re-running the workflow of a commit
	# replays its call (and waits on the same operation) instead of
	# restarting again; two steps of one commit do not collide.
	key="${GITHUB_SHA}-${command}-${subject}"
fi
[ -z "$key" ] || args+=(--idempotency-key "$key")

moc="${MOC_BIN:-}"
if [ -z "$moc" ]; then
	command -v go >/dev/null 2>&1 || die "go not found: the action builds moc from source (actions/setup-go runs first)"
	out="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/moc-action-bin"
	mkdir -p "$out"
	(cd "$action_path" && go build -o "$out/moc" ./cmd/moc) || die "building moc failed"
	moc="$out/moc"
fi

result="$(mktemp)"
trap 'rm -f "$result"' EXIT
set +e
"$moc" -o json "${args[@]}" >"$result"
code=$?
set -e
cat "$result"

# moc prints one JSON document with two-space indentation; the
# operation's own fields are the lines indented by exactly two spaces.
field() {
	sed -n 's/^  "'"$1"'": "\(.*\)",\{0,1\}$/\1/p' "$result" | head -n 1
}
if [ -n "${GITHUB_OUTPUT:-}" ]; then
	{
		echo "operation-id=$(field id)"
		echo "status=$(field status)"
		echo "instance-id=$(field instance_id)"
		echo "exit-code=$code"
	} >>"$GITHUB_OUTPUT"
fi
exit "$code"
