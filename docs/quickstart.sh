#!/usr/bin/env bash
# shoal quick start: a one-node cluster on the embedded store, running a demo
# service, on a fresh Debian or Ubuntu machine with a Rust toolchain.
#
#   bash docs/quickstart.sh         # set up (again) and show the demo
#   bash docs/quickstart.sh stop    # remove the demo and stop its daemon
#
# What it does: installs what is missing (containerd, runc, protobuf-compiler,
# busybox-static, jq, nftables, conntrack), builds shoal (cargo build --release), starts containerd
# if it is not running, starts `shoal daemon` in the background with its own
# data dir, socket and containerd namespace, runs `shoal init`, makes a demo
# image from Debian's busybox on the spot (tests/mkimage.sh), loads it, runs a
# 3-replica service and shows `service ps` and `service logs`. Running it
# twice is fine: whatever is already there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

STATE=/var/lib/shoal-demo               # the daemon's data dir
RUN=/run/shoal-demo                     # its control socket and pid file
SOCK=$RUN/shoal.sock
PIDFILE=$RUN/daemon.pid
LOG=/var/log/shoal-demo.log
NAMESPACE=shoal-demo                    # containerd namespace of the demo
ADDR=127.0.0.1:4290                     # loopback only: a one-node demo
CONTAINERD_SOCK=/run/containerd/containerd.sock
BIN=$repo/target/release/shoal

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() {
  echo "quickstart: $*" >&2
  exit 1
}
shoal() { "$BIN" --socket "$SOCK" "$@"; }

[ "$(id -u)" -eq 0 ] || die "run as root: bash docs/quickstart.sh"

daemon_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = shoal ] && echo "$pid"
}

containerd_up() {
  [ -S "$CONTAINERD_SOCK" ] && timeout 5 ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1
}

# --- stop ---------------------------------------------------------------------
if [ "${1:-}" = stop ]; then
  if pid=$(daemon_pid); then
    say "removing every service of the demo cluster, and the demo image"
    # All services, not only `demo`: whatever was tried on this cluster
    # runs in its namespace, and stop removes that namespace.
    ids=$(shoal service ls --format json 2>/dev/null | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p')
    for id in $ids; do
      shoal service rm "$id" >/dev/null 2>&1 || true
    done
    for _ in $(seq 1 30); do
      [ -z "$(timeout 5 ctr -n "$NAMESPACE" containers ls -q 2>/dev/null)" ] && break
      sleep 1
    done
    shoal image rm demo-busybox 2>/dev/null || true
    subnet=$(shoal node ls --format json 2>/dev/null | jq -r '.[0].bridge_subnet // empty' || true)
    say "stopping shoal daemon (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
  else
    echo "the demo daemon is not running"
  fi
  # Whatever is still in the namespace (the daemon was gone, or a task
  # did not stop in time) goes too: containers, then images, then it.
  if containerd_up; then
    for c in $(timeout 10 ctr -n "$NAMESPACE" tasks ls -q 2>/dev/null); do
      timeout 10 ctr -n "$NAMESPACE" tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
    done
    sleep 1
    for c in $(timeout 10 ctr -n "$NAMESPACE" containers ls -q 2>/dev/null); do
      timeout 10 ctr -n "$NAMESPACE" tasks rm -f "$c" >/dev/null 2>&1 || true
      timeout 10 ctr -n "$NAMESPACE" containers rm "$c" >/dev/null 2>&1 || true
    done
    for i in $(timeout 10 ctr -n "$NAMESPACE" images ls -q 2>/dev/null); do
      timeout 10 ctr -n "$NAMESPACE" images rm "$i" >/dev/null 2>&1 || true
    done
  fi
  # The node's bridge and its nftables table outlive the daemon (so that
  # a restarted daemon's tasks keep their network): the demo removes them.
  if [ -n "${subnet:-}" ]; then
    net=${subnet%/*}
    # shellcheck disable=SC2086 # split into the four octets
    hex=$(printf '%02x' ${net//./ })
    ip link del "shl$hex" 2>/dev/null || true
    nft delete table ip "shoal_$hex" 2>/dev/null || true
    nft delete table bridge "shoal_$hex" 2>/dev/null || true
    umount -l "/run/shoal/net/${subnet/\//_}/netns" 2>/dev/null || true
    rm -rf "/run/shoal/net/${subnet/\//_}"
  fi
  rm -rf "$RUN" "$STATE"
  timeout 10 ctr namespaces rm "$NAMESPACE" >/dev/null 2>&1 || true
  echo "demo removed ($STATE, $RUN). containerd is left running; the build stays in target/release."
  exit 0
fi
[ $# -eq 0 ] || die "usage: bash docs/quickstart.sh [stop]"

# --- packages -----------------------------------------------------------------
say "checking packages"
missing=()
# containerd and runc may come from Docker's packages (containerd.io): keep those.
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v jq >/dev/null 2>&1 || missing+=(jq)
# Tasks get a network of their own; nft masquerades their traffic out.
command -v nft >/dev/null 2>&1 || missing+=(nftables)
# UDP flows to a task that went are forgotten with it (conntrack -D).
command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
  missing+=(busybox-static) # the demo image needs a static busybox
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "all there"
fi

# --- build ----------------------------------------------------------------------
say "building shoal (cargo build --release; the first build takes a few minutes)"
# Build as the owner of the checkout, with their toolchain, so target/ does not
# end up owned by root.
owner=$(stat -c %U "$repo")
if [ "$owner" != root ] && [ "$owner" != UNKNOWN ]; then
  home=$(getent passwd "$owner" | cut -d: -f6)
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash
  runuser -u "$owner" -- env HOME="$home" PATH="$home/.cargo/bin:$PATH" \
    bash -c 'cd "$1" && cargo build --release' _ "$repo"
else
  PATH="$PATH:$HOME/.cargo/bin"
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain (https://rustup.rs)"
  cargo build --release
fi
[ -x "$BIN" ] || die "no $BIN after the build"

# --- containerd -------------------------------------------------------------------
say "containerd"
if containerd_up; then
  echo "running on $CONTAINERD_SOCK"
else
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl start containerd
  else
    mkdir -p /run/containerd
    setsid nohup containerd >/var/log/shoal-demo-containerd.log 2>&1 </dev/null &
  fi
  for _ in $(seq 1 60); do
    containerd_up && break
    sleep 0.5
  done
  containerd_up || die "containerd did not come up (see /var/log/shoal-demo-containerd.log or journalctl -u containerd)"
  echo "started; listening on $CONTAINERD_SOCK"
fi

# --- shoal daemon -------------------------------------------------------------------
say "shoal daemon"
if pid=$(daemon_pid); then
  echo "already running (pid $pid, socket $SOCK)"
else
  mkdir -p "$RUN" "$STATE"
  setsid nohup "$BIN" daemon \
    --data-dir "$STATE" \
    --socket "$SOCK" \
    --containerd "$CONTAINERD_SOCK" \
    --containerd-namespace "$NAMESPACE" \
    --listen "$ADDR" \
    --advertise "$ADDR" \
    >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 60); do
    [ -S "$SOCK" ] && break
    daemon_pid >/dev/null || break
    sleep 0.5
  done
  if ! daemon_pid >/dev/null || [ ! -S "$SOCK" ]; then
    tail -20 "$LOG" >&2
    die "shoal daemon did not start; its log is $LOG"
  fi
  echo "started (pid $(cat "$PIDFILE"), socket $SOCK, log $LOG)"
fi

# --- cluster ------------------------------------------------------------------------
say "shoal init"
if shoal node ls >/dev/null 2>&1; then
  echo "already a cluster"
else
  shoal init
fi
shoal node ls

# --- demo image ---------------------------------------------------------------------
say "demo image"
if shoal image ls | grep -q demo-busybox; then
  echo "demo-busybox is already loaded"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  bash tests/mkimage.sh "$tmp/demo-busybox.tar" demo-busybox
  shoal image load "$tmp/demo-busybox.tar"
fi
shoal image ls

# --- demo service ---------------------------------------------------------------------
say "demo service"
# Both wait for the tasks to run, showing their progress; 2 minutes at
# most, then the check below says what is wrong.
if shoal service inspect demo >/dev/null 2>&1; then
  echo "service demo exists; scaling it to 3"
  timeout 120 "$BIN" --socket "$SOCK" service scale demo=3 || true
else
  # The single quotes keep $(hostname) for the container's shell.
  # shellcheck disable=SC2016
  timeout 120 "$BIN" --socket "$SOCK" service create --name demo --replicas 3 demo-busybox \
    sh -c 'while true; do echo "hello from $(hostname)"; sleep 5; done' || true
fi
running=0
for _ in $(seq 1 60); do
  running=$(timeout 10 "$BIN" --socket "$SOCK" service ls --format json |
    jq -r '.[] | select(.name == "demo") | .running' || echo 0)
  [ "$running" = 3 ] && break
  sleep 1
done
[ "$running" = 3 ] || {
  shoal service ps demo >&2 || true
  die "the demo service did not reach 3 running tasks; see $LOG"
}

say "shoal service ps demo"
shoal service ps demo
sleep 1
say "shoal service logs demo --tail 3"
shoal service logs demo --tail 3

cat <<EOF

The demo runs: 3 busybox containers in containerd namespace $NAMESPACE.
Try it yourself, as root:
  export SHOAL_SOCKET=$SOCK
  $BIN service ls
  $BIN service scale demo=5
  $BIN service logs --follow demo
  ctr -n $NAMESPACE tasks ls          # what containerd runs
Stop it and remove it:
  bash docs/quickstart.sh stop
EOF
