#!/usr/bin/env bash
# Browser test runner (meson suite 'browser'): start a private PostgreSQL,
# finx-sandbox, finxd and the partner demo page (tests/demo/partner.mjs) on
# free loopback ports, then let headless Chromium (Debian's /usr/bin/chromium
# driven by playwright-core) click through partner.test.mjs.  Prints
# "N passed, N failed"; exits non-zero on any failure, 77 (meson SKIP) only
# when node or chromium is not installed (tests/scripts/deps.sh installs
# both).
#
# Environment: FINXD_EXE, SANDBOX_EXE (set by meson; default build/...),
# FINXD_TEST_KEEP=1 keeps the temp dir (logs, screenshots).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
finxd=${FINXD_EXE:-$root/build/server/finxd}
sandbox=${SANDBOX_EXE:-$root/build/tests/finx-sandbox}
chromium=${CHROMIUM:-/usr/bin/chromium}

if ! command -v node >/dev/null || ! command -v npm >/dev/null ||
	[[ ! -x $chromium ]]; then
	echo "1..0 # SKIP node, npm or $chromium missing (tests/scripts/deps.sh)"
	exit 77
fi
if [[ ! -d $here/node_modules/playwright-core ]]; then
	(cd "$here" && npm ci --no-audit --no-fund --loglevel=error) ||
		{ echo "0 passed, 1 failed (npm ci)"; exit 1; }
fi
# The partner page verifies webhooks with tests/webhooks' npm package.
if [[ ! -d $root/tests/webhooks/node_modules/standardwebhooks ]]; then
	(cd "$root/tests/webhooks" && npm ci --no-audit --no-fund --loglevel=error) ||
		{ echo "0 passed, 1 failed (npm ci in tests/webhooks)"; exit 1; }
fi

work=$(mktemp -d /tmp/finxd-browser.XXXXXX)
pids=()
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
runpg() {
	if [[ $(id -u) == 0 ]]; then
		runuser -u postgres -- "$pgbin/$1" "${@:2}"
	else
		"$pgbin/$1" "${@:2}"
	fi
}
cleanup() {
	local rc=$?
	set +e
	for p in "${pids[@]:-}"; do
		[[ -n $p ]] && kill "$p" 2>/dev/null
	done
	wait 2>/dev/null
	[[ -f $work/pg/PG_VERSION ]] &&
		runpg pg_ctl -D "$work/pg" -m immediate stop >/dev/null 2>&1
	if ((rc != 0)); then
		for f in finxd partner sandbox; do
			echo "--- $f.log (tail)"
			tail -n 15 "$work/$f.log" 2>/dev/null
		done
	fi
	if [[ -n ${FINXD_TEST_KEEP:-} ]]; then
		echo "# kept $work"
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
[[ -n $pgbin ]] || { echo "1..0 # SKIP no PostgreSQL server binaries"; exit 77; }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() { # url
	for _ in $(seq 150); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "not answering: $1"
	return 1
}

pg_port=$(free_port)
[[ $(id -u) == 0 ]] && chown postgres "$work"
runpg initdb -A trust -U postgres -E UTF8 --no-sync -D "$work/pg" >/dev/null
runpg pg_ctl -D "$work/pg" -l "$work/pg.log" -w -o \
	"-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c fsync=off" \
	start >/dev/null
runpg createdb -h 127.0.0.1 -p "$pg_port" -U postgres finxd

secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
umask 077
head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$work/api-key"
printf 'whsec_%s' "$(head -c 24 /dev/urandom | base64)" >"$work/webhook-secret"
umask 022
"$sandbox" --listen 127.0.0.1:0 --port-file "$work/sandbox.port" \
	--client-id browser-client --client-secret "$secret" \
	2>"$work/sandbox.log" &
pids+=($!)
for _ in $(seq 100); do
	[[ -s $work/sandbox.port ]] && break
	sleep 0.1
done
sbx_port=$(tr -dc 0-9 <"$work/sandbox.port")
finxd_port=$(free_port)
partner_port=$(free_port)

export FINXD_LISTEN=127.0.0.1:$finxd_port
export FINXD_PUBLIC_URL=http://127.0.0.1:$finxd_port
export FINXD_DATABASE_URL="host=127.0.0.1 port=$pg_port user=postgres dbname=finxd"
export FINXD_FINX_URL=http://127.0.0.1:$sbx_port
export FINXD_FINX_CLIENT_ID=browser-client
export FINXD_FINX_CLIENT_SECRET=$secret
export FINXD_API_KEYS_FILE=$work/api-key
export FINXD_RETURN_URLS=http://127.0.0.1:$partner_port/return
export FINXD_TOKEN_KEYS=k1:$(head -c 32 /dev/urandom | base64)
export FINXD_BROWSER_BINDING=required
export FINXD_WEBHOOK_URL=http://127.0.0.1:$partner_port/webhooks
FINXD_WEBHOOK_SECRET=$(cat "$work/webhook-secret")
export FINXD_WEBHOOK_SECRET
"$finxd" migrate >"$work/migrate.log" 2>&1
"$finxd" serve 2>"$work/finxd.log" &
pids+=($!)
wait_http "http://127.0.0.1:$finxd_port/readyz"

PARTNER_LISTEN=127.0.0.1:$partner_port \
	FINXD_URL=http://127.0.0.1:$finxd_port \
	PARTNER_API_KEY_FILE=$work/api-key \
	PARTNER_WEBHOOK_SECRET_FILE=$work/webhook-secret \
	node "$root/tests/demo/partner.mjs" 2>"$work/partner.log" &
pids+=($!)
wait_http "http://127.0.0.1:$partner_port/healthz"

PARTNER_URL=http://127.0.0.1:$partner_port \
	SANDBOX_URL=http://127.0.0.1:$sbx_port \
	API_KEY_FILE=$work/api-key \
	TEST_DIR=$work \
	CHROMIUM=$chromium \
	timeout 150 node "$here/partner.test.mjs"
