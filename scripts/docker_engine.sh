#!/usr/bin/env bash
# A private Docker Engine for the compose stack and its test, on a machine without one:
# Debian's docker.io + docker-compose, and a dockerd with its own data root, exec root, socket
# and pid file, so that it shares nothing with another engine on the machine.
#
# It never touches the host's networking: --iptables=false (no NAT or filter rules),
# --ip-forward=false (the host's sysctl stays as it is), --bridge=none (no docker0). Containers
# reach each other on the compose project's own bridge network and nothing else; published
# ports go through docker-proxy on the address the compose file names (127.0.0.1). Builds
# that need the package registries run with `docker build --network host`.
#
# Usage: scripts/docker_engine.sh install|start|stop|status|env|purge
#   install  apt-get install docker.io docker-compose debootstrap (services never autostart)
#   start    start dockerd unless it runs (idempotent); waits until it answers
#   stop     stop it by its pid file (its containerd with it)
#   status   exit 0 when it runs
#   env      `eval "$(scripts/docker_engine.sh env)"` points docker and docker-compose at it
#   purge    stop, then delete its data root (images, build cache, volumes)
# Tunables: AUDIO_DOCKER_ROOT (/var/lib/audio-pipeline-docker), AUDIO_DOCKER_RUN
#           (/run/audio-pipeline-docker). Needs root.
set -euo pipefail
ROOT=${AUDIO_DOCKER_ROOT:-/var/lib/audio-pipeline-docker}
RUN=${AUDIO_DOCKER_RUN:-/run/audio-pipeline-docker}
SOCK=$RUN/docker.sock
PIDFILE=$RUN/dockerd.pid
LOG=$ROOT/dockerd.log

log() { printf '[docker-engine] %s\n' "$*" >&2; }

alive() { [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

answers() { DOCKER_HOST=unix://$SOCK /usr/bin/docker version >/dev/null 2>&1; }

do_install() {
  local pkgs=(docker.io docker-compose debootstrap) missing=() p
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  # Without systemd, docker.io's postinst would start a default dockerd through its init
  # script (iptables rules, docker0): forbid service starts while installing.
  local guard=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$guard"
    chmod 755 "$guard"
  fi
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { [[ -z $guard ]] || rm -f "$guard"; return 1; }
  [[ -z $guard ]] || rm -f "$guard"
}

do_start() {
  if alive && answers; then return 0; fi
  mkdir -p "$ROOT" "$RUN"
  log "starting dockerd (data root $ROOT, socket $SOCK; log $LOG)"
  setsid dockerd --data-root "$ROOT/data" --exec-root "$RUN/exec" --pidfile "$PIDFILE" \
    --host "unix://$SOCK" --storage-driver overlay2 \
    --iptables=false --ip-forward=false --bridge=none >>"$LOG" 2>&1 </dev/null &
  local deadline=$((SECONDS + 60))
  until answers; do
    if ((SECONDS > deadline)) || ! kill -0 $! 2>/dev/null; then
      tail -20 "$LOG" >&2
      log "dockerd did not come up"
      return 1
    fi
    sleep 0.5
  done
}

do_stop() {
  if alive; then
    local pid; pid=$(cat "$PIDFILE")
    log "stopping dockerd ($pid)"
    kill "$pid"
    for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then
      log "dockerd did not stop in 30 s: killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  # dockerd leaves its network namespace mount (exec root/netns/default) behind.
  local mnt
  for mnt in $(findmnt -rn -o TARGET | grep "^$RUN/" | sort -r); do umount "$mnt" || true; done
}

[[ $EUID -eq 0 ]] || { echo "docker_engine.sh must run as root" >&2; exit 1; }
case ${1:-} in
  install) do_install ;;
  start) do_start ;;
  stop) do_stop ;;
  status) alive && answers ;;
  env) echo "export DOCKER_HOST=unix://$SOCK" ;;
  purge) do_stop; rm -rf "$ROOT" ;;
  *) echo "usage: $0 install|start|stop|status|env|purge" >&2; exit 2 ;;
esac
