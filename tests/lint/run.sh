#!/usr/bin/env bash
# Lint server/openapi.json with Redocly's OpenAPI linter (npm package,
# pinned in package-lock.json).  Installs it on first use.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/redocly ]; then
	npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
# NO_UPDATE_NOTIFIER / REDOCLY_TELEMETRY: no calls home from tests.
export NO_UPDATE_NOTIFIER=1 REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
if node_modules/.bin/redocly lint ../../server/openapi.json \
	--config redocly.yaml --format=stylish; then
	echo "1 passed, 0 failed"
else
	echo "0 passed, 1 failed"
	exit 1
fi
