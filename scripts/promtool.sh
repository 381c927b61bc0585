#!/usr/bin/env bash
# Checks deploy/prometheus with promtool (Debian package `prometheus`),
# installing it when it is missing, as services.sh does for PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null 2>&1; then
	echo "promtool: installing the Debian package prometheus"
	sudo=""
	if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
	# The package starts a Prometheus server; only its promtool is wanted.
	$sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
promtool check rules deploy/prometheus/alerts.yml
promtool check config --syntax-only deploy/prometheus/prometheus.yml
