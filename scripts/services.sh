#!/usr/bin/env bash
# services.sh makes PostgreSQL and Redis usable on this machine for the tests
# (scripts/test.sh) and for `mocd dev` (scripts/dev.sh):
#
#   - PostgreSQL answers on 127.0.0.1:5432 and accepts
#     postgres://postgres@127.0.0.1:5432 without a password;
#   - the redis-server binary is installed (the tests start their own private
#     redis-server processes on free ports);
#   - something answers PING on 127.0.0.1:6379 (for `mocd dev`).
#
# Works on a fresh Debian machine: installs the packages with apt-get and
# starts the cluster with pg_ctlcluster (no systemd needed). Uses sudo only
# when not root. Quiet when everything is already up; otherwise one line per
# action on stderr. Exits non-zero with a message when it cannot succeed.
#
# Set MOC_SKIP_SERVICES=1 to skip all of this (you manage the services
# yourself, e.g. point MOC_TEST_DATABASE_URL at another server).
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ "${MOC_SKIP_SERVICES:-}" = 1 ]; then
	exit 0
fi

PG_HOST=127.0.0.1
PG_PORT=5432
PG_ADMIN_URL="postgres://postgres@$PG_HOST:$PG_PORT/postgres?sslmode=disable&connect_timeout=5"
PG_TRUST_LINE="host all all 127.0.0.1/32 trust"
REDIS_PORT=6379

# with_timeout runs a command with a time limit when timeout(1) exists.
with_timeout() {
	local secs=$1
	shift
	if command -v timeout >/dev/null 2>&1; then
		timeout "$secs" "$@"
	else
		"$@"
	fi
}

# tcp_open tells whether something accepts TCP connections on 127.0.0.1:$1.
tcp_open() {
	# shellcheck disable=SC2016 # $1 expands in the inner bash
	with_timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# wait_for runs a command every half second until it succeeds, at most $1 seconds.
wait_for() {
	local tries=$(($1 * 2))
	shift
	while [ "$tries" -gt 0 ]; do
		if "$@"; then
			return 0
		fi
		sleep 0.5
		tries=$((tries - 1))
	done
	return 1
}

# ---------------------------------------------------------------- PostgreSQL

pg_ready() {
	command -v pg_isready >/dev/null 2>&1 &&
		pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1
}

# pg_server_installed tells whether Debian's PostgreSQL server is installed.
pg_server_installed() {
	compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null &&
		command -v pg_ctlcluster >/dev/null 2>&1
}

# pg_cluster prints "version name status" of the Debian cluster configured
# for port 5432, or nothing.
pg_cluster() {
	command -v pg_lsclusters >/dev/null 2>&1 || return 0
	pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2, $4; exit }'
}

# pg_auth_error tries the admin URL without a password; prints the error and
# fails when the connection is refused.
pg_auth_error() {
	local out
	if out="$(env -u PGPASSWORD PGPASSFILE=/dev/null \
		psql "$PG_ADMIN_URL" -w -X -A -t -q -c 'select 1' 2>&1 >/dev/null)"; then
		return 0
	fi
	printf '%s\n' "${out:-psql failed}"
	return 1
}

ensure_postgres() {
	if ! pg_ready; then
		if ! pg_server_installed; then
			if tcp_open "$PG_PORT"; then
				# A server we do not manage (another install, a container)
				# holds the port; we only need the client tools to use it.
				apt_install postgresql-client
			else
				apt_install postgresql postgresql-contrib
			fi
		fi
	fi

	if ! pg_ready && pg_server_installed; then
		local cluster ver name status
		cluster="$(pg_cluster)"
		if [ -z "$cluster" ]; then
			if compgen -G '/etc/postgresql/*/*/postgresql.conf' >/dev/null; then
				die "PostgreSQL clusters exist ($(pg_lsclusters -h 2>/dev/null | awk '{ printf "%s/%s port %s; ", $1, $2, $3 }')) but none is configured for port $PG_PORT; set port = $PG_PORT in its postgresql.conf"
			fi
			ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
			log "creating PostgreSQL cluster $ver/main on port $PG_PORT"
			as_root pg_createcluster --port "$PG_PORT" "$ver" main >/dev/null ||
				die "pg_createcluster $ver main failed"
			cluster="$(pg_cluster)"
			[ -n "$cluster" ] || die "created cluster $ver/main but pg_lsclusters does not list it on port $PG_PORT"
		fi
		read -r ver name status <<<"$cluster"
		case "$status" in
		online*)
			# Running (perhaps just started by the package): give it a moment.
			wait_for 10 pg_ready ||
				die "PostgreSQL cluster $ver/$name is running but $PG_HOST:$PG_PORT does not answer; check listen_addresses in /etc/postgresql/$ver/$name/postgresql.conf"
			;;
		*)
			log "starting PostgreSQL cluster $ver/$name"
			as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start ||
				die "pg_ctlcluster $ver $name start failed (see /var/log/postgresql/postgresql-$ver-$name.log)"
			;;
		esac
	fi

	if ! wait_for 30 pg_ready; then
		if ! command -v pg_isready >/dev/null 2>&1; then
			die "pg_isready not found after installing PostgreSQL"
		fi
		die "PostgreSQL does not answer on $PG_HOST:$PG_PORT"
	fi

	command -v psql >/dev/null 2>&1 || apt_install postgresql-client

	local err
	if ! err="$(pg_auth_error)"; then
		if ! grep -Eqi 'password|authentication|pg_hba' <<<"$err"; then
			die "cannot connect to postgres://postgres@$PG_HOST:$PG_PORT: $err"
		fi
		# Debian's default pg_hba.conf asks for a password on 127.0.0.1. The
		# tests and `mocd dev` connect as postgres without one: trust loopback.
		local cluster ver name status hba
		cluster="$(pg_cluster)"
		[ -n "$cluster" ] ||
			die "postgres://postgres@$PG_HOST:$PG_PORT needs a password ($err) and the server is not a local Debian cluster; allow trust auth from 127.0.0.1 or set MOC_TEST_DATABASE_URL"
		read -r ver name status <<<"$cluster"
		hba="/etc/postgresql/$ver/$name/pg_hba.conf"
		as_root test -f "$hba" || die "$hba not found"
		if as_root grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
			die "postgres://postgres@$PG_HOST:$PG_PORT refused although $hba trusts 127.0.0.1: $err"
		fi
		# shellcheck disable=SC2016 # literal backquotes in the comment line
		as_root sed -i \
			-e '1i # Added by mocd scripts/services.sh: the tests and `mocd dev` connect as postgres without a password.' \
			-e "1i $PG_TRUST_LINE" "$hba" || die "cannot edit $hba"
		log "added '$PG_TRUST_LINE' at the top of $hba"
		log "reloading PostgreSQL cluster $ver/$name"
		as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload ||
			die "pg_ctlcluster $ver $name reload failed"
		if ! wait_for 10 pg_auth_error >/dev/null; then
			die "postgres://postgres@$PG_HOST:$PG_PORT still refused after trusting 127.0.0.1: $(pg_auth_error || true)"
		fi
	fi

	# `mocd dev` uses postgres://postgres@127.0.0.1:5432/mocd by default.
	if [ -z "${DATABASE_URL:-}" ]; then
		local have
		have="$(psql "$PG_ADMIN_URL" -w -X -A -t -q -c "select 1 from pg_database where datname = 'mocd'" 2>/dev/null || true)"
		if [ "$have" != 1 ]; then
			log "creating database mocd (for mocd dev)"
			psql "$PG_ADMIN_URL" -w -X -q -c 'create database mocd' >/dev/null ||
				die "cannot create database mocd"
		fi
	fi
}

# --------------------------------------------------------------------- Redis

redis_ping() {
	[ "$(with_timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
}

ensure_redis() {
	# The tests start their own redis-server processes: the binary is required.
	command -v redis-server >/dev/null 2>&1 || apt_install redis-server
	command -v redis-server >/dev/null 2>&1 || die "redis-server not found after installing it"
	command -v redis-cli >/dev/null 2>&1 || apt_install redis-tools

	# Installing the package may have started the service already.
	if redis_ping; then
		return 0
	fi
	if tcp_open "$REDIS_PORT"; then
		die "something listens on 127.0.0.1:$REDIS_PORT but does not answer PING (a Redis with a password?)"
	fi
	log "starting redis-server on 127.0.0.1:$REDIS_PORT"
	redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
		--save "" --appendonly no --dir "${TMPDIR:-/tmp}" >/dev/null ||
		die "redis-server failed to start"
	wait_for 10 redis_ping || die "redis-server started but 127.0.0.1:$REDIS_PORT does not answer PING"
}

ensure_postgres
ensure_redis
