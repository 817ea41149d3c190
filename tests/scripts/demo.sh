#!/usr/bin/env bash
# README command 1: install what is missing, build, and run finxd for real
# on a private PostgreSQL and finx-sandbox, then print where to point a
# browser.  Ctrl-C stops everything and removes the private database.
#
# The partner page (tests/demo/partner.mjs, a stand-in for a partner's web
# app) is where a person starts: "Connect your bank" -> sandbox widget ->
# Approve -> back on the page with the accounts and latest transactions.
#
# Ports (override with env): FINXD_DEMO_PORT (8080), SANDBOX_PORT (8081),
# PARTNER_PORT (8090), PG_PORT (54329).  Bind address is loopback only.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"

FINXD_DEMO_PORT=${FINXD_DEMO_PORT:-8080}
SANDBOX_PORT=${SANDBOX_PORT:-8081}
PARTNER_PORT=${PARTNER_PORT:-8090}
PG_PORT=${PG_PORT:-54329}

bash tests/scripts/deps.sh
if [ ! -f build/build.ninja ]; then
	meson setup build >/dev/null
fi
meson compile -C build >/dev/null
# The partner page verifies webhooks with the npm package of tests/webhooks.
if [ ! -d tests/webhooks/node_modules/standardwebhooks ]; then
	(cd tests/webhooks && npm ci --no-audit --no-fund --loglevel=error)
fi

work=$(mktemp -d /tmp/finxd-demo.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]:-}"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [ -f "$work/pg/PG_VERSION" ]; then
		runpg pg_ctl -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
runpg() {
	local tool=$1
	shift
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$pgbin/$tool" "$@"
	else
		"$pgbin/$tool" "$@"
	fi
}
[ "$(id -u)" = 0 ] && chown postgres "$work"
runpg initdb -A trust -U postgres -E UTF8 -D "$work/pg" >/dev/null
runpg pg_ctl -D "$work/pg" -l "$work/pg.log" -w \
	-o "-p $PG_PORT -k $work -c listen_addresses=127.0.0.1" start >/dev/null
runpg createdb -h 127.0.0.1 -p "$PG_PORT" -U postgres finxd

secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
api_key=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
webhook_secret=whsec_$(head -c 24 /dev/urandom | base64)
umask 077
printf '%s' "$api_key" >"$work/api-key"
printf '%s' "$webhook_secret" >"$work/webhook-secret"
export FINXD_LISTEN=127.0.0.1:$FINXD_DEMO_PORT
export FINXD_PUBLIC_URL=http://127.0.0.1:$FINXD_DEMO_PORT
export FINXD_DATABASE_URL="host=127.0.0.1 port=$PG_PORT user=postgres dbname=finxd"
export FINXD_FINX_URL=http://127.0.0.1:$SANDBOX_PORT
export FINXD_FINX_CLIENT_ID=demo-client
export FINXD_FINX_CLIENT_SECRET=$secret
export FINXD_API_KEYS=$api_key
export FINXD_RETURN_URLS=http://127.0.0.1:$SANDBOX_PORT/demo,http://127.0.0.1:$PARTNER_PORT/return
export FINXD_TOKEN_KEYS=k1:$(head -c 32 /dev/urandom | base64)
# Every event is delivered to the partner page, which verifies and lists it.
export FINXD_WEBHOOK_URL=http://127.0.0.1:$PARTNER_PORT/webhooks
export FINXD_WEBHOOK_SECRET=$webhook_secret

build/tests/finx-sandbox --listen 127.0.0.1:"$SANDBOX_PORT" \
	--client-id demo-client --client-secret "$secret" \
	2>"$work/sandbox.log" &
pids+=($!)
build/server/finxd migrate >/dev/null
build/server/finxd serve 2>>"$work/finxd.log" &
pids+=($!)

# serve listens before the database is ready: wait for /readyz, not
# just /healthz
for _ in $(seq 100); do
	curl -fsS "http://127.0.0.1:$FINXD_DEMO_PORT/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "http://127.0.0.1:$FINXD_DEMO_PORT/readyz" >/dev/null

PARTNER_LISTEN=127.0.0.1:$PARTNER_PORT \
	FINXD_URL=http://127.0.0.1:$FINXD_DEMO_PORT \
	PARTNER_API_KEY_FILE=$work/api-key \
	PARTNER_WEBHOOK_SECRET_FILE=$work/webhook-secret \
	node tests/demo/partner.mjs 2>>"$work/partner.log" &
pids+=($!)
for _ in $(seq 100); do
	curl -fsS "http://127.0.0.1:$PARTNER_PORT/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done

link=$(curl -fsS -X POST "http://127.0.0.1:$FINXD_DEMO_PORT/v1/links" \
	-H "Authorization: Bearer $api_key" -H 'Content-Type: application/json' \
	-d '{"user_id":"demo-user","language":"en"}')
start_url=$(printf '%s' "$link" | python3 -c 'import json,sys; print(json.load(sys.stdin)["start_url"])')

cat <<MSG

finxd is running on http://127.0.0.1:$FINXD_DEMO_PORT with a private PostgreSQL
(port $PG_PORT) and finx-sandbox (http://127.0.0.1:$SANDBOX_PORT).

Point a browser at the partner demo page, press "Connect your bank", then
Approve in the sandbox widget; you land back on the page with the accounts
and the latest transactions, and below them the webhooks finxd delivered to the
page (verified with the Standard Webhooks library) as they arrive:

    http://127.0.0.1:$PARTNER_PORT/

Or drive finxd directly: this widget link for user "demo-user" (Approve):

    $start_url

Then read the connection back over /v1:

    curl -s -H "Authorization: Bearer \$(cat $work/api-key)" \\
        http://127.0.0.1:$FINXD_DEMO_PORT/v1/users/demo-user/connections

Make another link:

    curl -s -X POST -H "Authorization: Bearer \$(cat $work/api-key)" \\
        -H 'Content-Type: application/json' -d '{"user_id":"demo-user"}' \\
        http://127.0.0.1:$FINXD_DEMO_PORT/v1/links

The demo's throw-away API key is in $work/api-key.  Logs: $work/finxd.log,
$work/partner.log
Press Ctrl-C to stop.
MSG
wait "${pids[1]}"
