#!/usr/bin/env bash
# Build the finxd container image without a Docker engine (podman with
# --isolation chroot), then prove it works: run finxd and finx-sandbox from
# the images (buildah run --isolation chroot, host network) against a
# private PostgreSQL, check /healthz, /readyz, /metrics and one widget flow
# end to end, stop finxd with SIGTERM, print the image size, clean up.
#
# Run as root on Debian 12 from anywhere:  bash docker/build.sh
# Environment:
#   FINXD_IMAGE        tag of the service image (localhost/finxd:dev)
#   FINXD_IMAGE_KEEP   1: keep the images and the storage afterwards
#   STORAGE_DRIVER     containers/storage driver (overlay, vfs on failure)
# When no image registry answers, the debian:bookworm-slim base is made
# locally with debootstrap --variant=minbase + podman import.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
image=${FINXD_IMAGE:-localhost/finxd:dev}
sbx_image=${image%:*}-sandbox:${image##*:}
base=localhost/debian:bookworm-slim
limit_mib=200
t0=$(date +%s)

say() { printf '== %s (%ss)\n' "$*" "$(($(date +%s) - t0))"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (podman, debootstrap, runuser)"

# ---- tools ---------------------------------------------------------------
need=()
for p in podman buildah debootstrap uidmap curl postgresql python3; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[[ $st == "install ok installed" ]] || need+=("$p")
done
if ((${#need[@]} > 0)); then
	say "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d /var/tmp/finxd-image.XXXXXX)
store=$work/storage
driver=${STORAGE_DRIVER:-overlay}
pids=()
ctrs=()

podman_() { podman --root "$store" --runroot "$work/run" \
	--storage-driver "$driver" "$@"; }
buildah_() { buildah --root "$store" --runroot "$work/run" \
	--storage-driver "$driver" "$@"; }

pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
runpg() { runuser -u postgres -- "$pgbin/$1" "${@:2}"; }

# buildah run does not pass signals on to the process it runs: end the
# whole tree, innermost first (a sandbox outlived the script before).
kill_tree() {
	local c
	for c in $(ps -o pid= --ppid "$1"); do
		kill_tree "$c"
	done
	kill "$1" 2>/dev/null
}

cleanup() {
	set +e
	for p in "${pids[@]:-}"; do
		[[ -n $p ]] && kill_tree "$p"
	done
	wait 2>/dev/null
	for c in "${ctrs[@]:-}"; do
		[[ -n $c ]] && buildah_ rm "$c" >/dev/null 2>&1
	done
	if [[ -f $work/pg/PG_VERSION ]]; then
		runpg pg_ctl -D "$work/pg" -m fast stop >/dev/null 2>&1
	fi
	if [[ ${FINXD_IMAGE_KEEP:-0} == 1 ]]; then
		echo "kept: podman --root $store --runroot $work/run images"
	else
		podman_ rmi -af >/dev/null 2>&1
		podman_ system reset -f >/dev/null 2>&1
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! podman_ info >/dev/null 2>&1; then
	driver=vfs
fi
say "podman $(podman --version | awk '{print $3}'), storage driver $driver"

# ---- base image ------------------------------------------------------------
if timeout 60 podman_ pull -q docker.io/library/debian:bookworm-slim \
	>/dev/null 2>&1; then
	podman_ tag docker.io/library/debian:bookworm-slim "$base"
	say "base image pulled from docker.io"
else
	say "no image registry reachable: debootstrap --variant=minbase bookworm"
	rootfs=$work/rootfs
	debootstrap --variant=minbase bookworm "$rootfs" \
		http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
		die "debootstrap failed, see $work/debootstrap.log"
	# Trim it the way the official -slim image is trimmed: no docs, man
	# pages or locales now or in later apt installs, no apt caches.
	cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<-'CFG'
	path-exclude /usr/share/doc/*
	path-include /usr/share/doc/*/copyright
	path-exclude /usr/share/man/*
	path-exclude /usr/share/info/*
	path-exclude /usr/share/locale/*
	path-include /usr/share/locale/locale.alias
	CFG
	cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<-'CFG'
	DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
	APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
	Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
	CFG
	find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright \
		-not -type d -delete
	rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
		"$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
		"$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
	find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 \
		-not -name locale.alias -exec rm -rf {} +
	tar -C "$rootfs" --numeric-owner -cf - . |
		podman_ import --change 'CMD ["bash"]' - "$base" >/dev/null
	rm -rf "$rootfs"
	say "base image $base made locally"
fi

# ---- build ---------------------------------------------------------------
# A clean context: the files git knows (tracked or not ignored), so no
# build directory or node_modules goes into the image.
ctx=$work/context
mkdir -p "$ctx"
(cd "$root" && git ls-files -co --exclude-standard -z |
	grep -zv -e '/node_modules/' -e '^build' |
	xargs -0 cp --parents -t "$ctx" 2>/dev/null || true)
[[ -f $ctx/meson.build ]] || die "could not prepare the build context"
for target in finxd sandbox; do
	tag=$image
	[[ $target == sandbox ]] && tag=$sbx_image
	say "podman build --isolation chroot --target $target -t $tag"
	# docker format: the OCI image format has no HEALTHCHECK
	podman_ build --isolation chroot --format docker --pull=never \
		--network host \
		--build-arg DEBIAN_IMAGE="$base" --target "$target" \
		-f "$ctx/docker/Dockerfile" -t "$tag" "$ctx" \
		>"$work/build-$target.log" 2>&1 ||
		{ tail -n 40 "$work/build-$target.log"; die "build failed"; }
done
size=$(podman_ image inspect --format '{{.Size}}' "$image")
sbx_size=$(podman_ image inspect --format '{{.Size}}' "$sbx_image")
size_mib=$(((size + 1048575) / 1048576))
say "image $image: $size bytes ($size_mib MiB); sandbox image $((sbx_size / 1048576)) MiB"
podman_ images
((size_mib < limit_mib)) || die "image is $size_mib MiB, over $limit_mib MiB"
podman_ image inspect --format \
	'user={{.Config.User}} entrypoint={{.Config.Entrypoint}} cmd={{.Config.Cmd}} env={{.Config.Env}}' \
	"$image"
hc_json=$(podman_ image inspect --format '{{json .HealthCheck}}' "$image")
echo "healthcheck=$hc_json"

# ---- run it --------------------------------------------------------------
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
pg_port=$(free_port)
finxd_port=$(free_port)
sbx_port=$(free_port)
say "private PostgreSQL on 127.0.0.1:$pg_port"
mkdir -p "$work/pg" && chown postgres "$work" "$work/pg"
runpg initdb -A trust -U postgres -E UTF8 -D "$work/pg" >/dev/null
runpg pg_ctl -D "$work/pg" -l "$work/pg/log" -w \
	-o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
runpg createdb -h 127.0.0.1 -p "$pg_port" -U postgres finxd

secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
api_key=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
envs=(
	FINXD_LISTEN=127.0.0.1:$finxd_port
	FINXD_PUBLIC_URL=http://127.0.0.1:$finxd_port
	"FINXD_DATABASE_URL=host=127.0.0.1 port=$pg_port user=postgres dbname=finxd"
	FINXD_FINX_URL=http://127.0.0.1:$sbx_port
	FINXD_FINX_CLIENT_ID=image-client
	FINXD_FINX_CLIENT_SECRET=$secret
	FINXD_API_KEYS=$api_key
	FINXD_RETURN_URLS=http://127.0.0.1:9/return
	FINXD_TOKEN_KEYS=k1:$(head -c 32 /dev/urandom | base64)
)
ctr=$(buildah_ from --pull-never "$image")
ctrs+=("$ctr")
sctr=$(buildah_ from --pull-never "$sbx_image")
ctrs+=("$sctr")
env_args=()
for e in "${envs[@]}"; do env_args+=(--env "$e"); done
buildah_ config "${env_args[@]}" "$ctr"

say "buildah run: finx-sandbox (sandbox image), finxd migrate, finxd serve"
buildah_ run --isolation chroot --network host "$sctr" -- finx-sandbox \
	--listen "127.0.0.1:$sbx_port" --client-id image-client \
	--client-secret "$secret" >"$work/sandbox.log" 2>&1 &
pids+=($!)
buildah_ run --isolation chroot --network host "$ctr" -- id
buildah_ run --isolation chroot --network host "$ctr" -- finxd version
buildah_ run --isolation chroot --network host "$ctr" -- finxd migrate
buildah_ run --isolation chroot --network host "$ctr" -- finxd serve \
	>"$work/finxd.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")

url=http://127.0.0.1:$finxd_port
# serve listens before the database is ready: wait for /readyz
for _ in $(seq 150); do
	curl -fsS "$url/readyz" >/dev/null 2>&1 && break
	sleep 0.2
done
fail=0
check() { # name, expected status, curl args...
	local name=$1 want=$2 got
	shift 2
	got=$(curl -s -o "$work/body" -w '%{http_code}' "$@" || true)
	if [[ $got == "$want" ]]; then
		printf 'ok   %-34s %s\n' "$name" "$got"
	else
		printf 'FAIL %-34s %s (want %s)\n' "$name" "$got" "$want"
		fail=1
	fi
}
check "GET /healthz" 200 "$url/healthz"
check "GET /readyz" 200 "$url/readyz"
check "GET /metrics" 200 "$url/metrics"
grep -q '^# TYPE ' "$work/body" || { echo "FAIL metrics text"; fail=1; }
check "POST /v1/links" 201 -X POST "$url/v1/links" \
	-H "Authorization: Bearer $api_key" -H 'Content-Type: application/json' \
	-d '{"user_id":"image-check","return_url":"http://127.0.0.1:9/return"}'
location=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["location"])' \
	"$work/body" 2>/dev/null || true)
cb=$(curl -s -o /dev/null -w '%{redirect_url}' "$location&decision=approve" || true)
back=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$cb" || true)
case $back in
"303 "*status=connected*) echo "ok   GET /callback: 303, status=connected" ;;
*) echo "FAIL GET /callback: ${back%%\?*}"; fail=1 ;;
esac
check "GET /v1/users/image-check/connections" 200 \
	"$url/v1/users/image-check/connections" -H "Authorization: Bearer $api_key"

# The image's own HEALTHCHECK command, run inside the image.
hc_cmd=()
while IFS= read -r -d '' a; do hc_cmd+=("$a"); done < <(python3 -c '
import json, sys
t = json.loads(sys.argv[1] or "null") or {}
t = t.get("Test") or []
if t[:1] == ["CMD"]:
    sys.stdout.write("".join(a + "\0" for a in t[1:]))
' "$hc_json")
if ((${#hc_cmd[@]} > 0)) &&
	buildah_ run --isolation chroot --network host "$ctr" -- "${hc_cmd[@]}"; then
	echo "ok   HEALTHCHECK command passes inside the image"
else
	echo "FAIL HEALTHCHECK missing or failing: $hc_json"
	fail=1
fi

# SIGTERM to finxd itself (the innermost process under buildah run).
descendant() {
	local p=$1 c
	while c=$(ps -o pid= --ppid "$p" | head -n 1 | tr -d ' ') && [[ -n $c ]]; do
		p=$c
	done
	echo "$p"
}
fpid=$(descendant "$serve_pid")
comm=$(cat "/proc/$fpid/comm" 2>/dev/null || true)
kill -TERM "$fpid"
rc=0
wait "$serve_pid" || rc=$?
if [[ $comm == finxd && $rc == 0 ]]; then
	echo "ok   SIGTERM: finxd exited 0"
else
	echo "FAIL SIGTERM: process $comm exit $rc"
	fail=1
fi
pids=("${pids[0]}")
grep -c '"msg":"stopping"\|stopping' "$work/finxd.log" >/dev/null &&
	echo "ok   finxd logged its stop (JSON lines: $(wc -l <"$work/finxd.log"))"
if ((fail)); then
	echo "--- finxd log (tail)"
	tail -n 20 "$work/finxd.log"
	die "the image does not work"
fi
say "image verified: $image, $size_mib MiB (limit $limit_mib MiB)"
