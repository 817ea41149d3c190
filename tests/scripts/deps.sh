#!/usr/bin/env bash
# Install what building and testing finxd needs on Debian 12 (run as root).
# Idempotent: when every package is already installed, apt is not touched.
# The system PostgreSQL cluster is not started: the tests run their own.
set -euo pipefail

packages=(
	build-essential meson ninja-build pkg-config
	libmicrohttpd-dev libcurl4-openssl-dev libjson-c-dev libpq-dev libssl-dev
	postgresql postgresql-contrib
	curl ca-certificates clang libclang-rt-14-dev wrk python3
	git # the deploy test builds the finxd of an earlier commit
)

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	if [[ "$status" != "install ok installed" ]]; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} > 0)); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "deps.sh: missing packages (run as root to install): ${missing[*]}" >&2
		exit 1
	fi
	echo "deps.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y --no-install-recommends "${missing[@]}"
else
	echo "deps.sh: all packages present"
fi

# The postgresql package creates it; make sure, since the tests run
# initdb/pg_ctl as this user when started as root.
if ! getent passwd postgres >/dev/null; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "deps.sh: no postgres user and not root" >&2
		exit 1
	fi
	useradd --system --home-dir /var/lib/postgresql --shell /bin/bash \
		--user-group postgres
fi

# The demo's partner page and the browser test: Node.js with npm (a
# nodejs package that bundles npm counts) and Debian's chromium, which
# playwright-core drives (tests/browser/).  No browser download by npm.
web=()
command -v node >/dev/null || web+=(nodejs)
command -v npm >/dev/null || web+=(npm)
[[ -x /usr/bin/chromium ]] || web+=(chromium)
if ((${#web[@]} > 0)); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "deps.sh: missing (run as root to install): ${web[*]}" >&2
		exit 1
	fi
	echo "deps.sh: installing ${web[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y --no-install-recommends "${web[@]}"
fi
