#!/usr/bin/env bash
# Installs shoal on this machine (a Raspberry Pi, or any systemd Linux):
#
#   sudo systemd/install.sh [--now] [path/to/shoal]
#
#   /usr/local/bin/shoal                  the binary
#   /etc/systemd/system/shoal.service     the unit (Type=notify, needs containerd)
#   /etc/default/shoal                    daemon flags; kept if it exists
#   bash/zsh/fish completions, man page   when the binary can generate them
#
# Without a path it takes `shoal` from the directory that holds systemd/
# (an unpacked release), else this machine's build under target/. With
# --now it also runs `systemctl enable --now shoal`. Set DESTDIR=/some/dir to install under
# another root (for packaging; no systemctl is run then). Running it again
# upgrades the binary and unit in place; restart the daemon to use them
# (containers keep running across the restart).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
dest="${DESTDIR:-}"

die() { echo "install.sh: error: $*" >&2; exit 1; }
warn() { echo "install.sh: warning: $*" >&2; }

now=no
bin=""
for arg in "$@"; do
  case "$arg" in
    --now) now=yes ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $arg (see --help)" ;;
    *) [ -z "$bin" ] || die "one binary only"; bin="$arg" ;;
  esac
done

if [ -z "$dest" ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root (sudo $0 $*), or set DESTDIR to install under another root"
fi

# The binary: given, shipped beside systemd/, or built here for this machine.
if [ -z "$bin" ]; then
  case "$(uname -m)" in
    aarch64 | arm64) triple=aarch64-unknown-linux-musl ;;
    armv7l | armv8l) triple=armv7-unknown-linux-gnueabihf ;;
    x86_64) triple=x86_64-unknown-linux-gnu ;;
    *) triple="" ;;
  esac
  for b in "$root/shoal" ${triple:+"$root/target/$triple/release/shoal"} "$root/target/release/shoal"; do
    if [ -f "$b" ]; then bin="$b"; break; fi
  done
  [ -n "$bin" ] || die "no shoal binary found: pass its path (see docs/pi.md)"
fi
[ -f "$bin" ] || die "$bin: no such file"
# Running it proves it is built for this CPU (armv6 boards fail here).
version="$("$bin" --version 2>&1)" ||
  die "$bin does not run on this machine ($(uname -m)): $version"
echo "installing $version from $bin"

# Replace the binary by rename, so a running daemon is never left with a
# half-written file (and no "text file busy").
install -d "$dest/usr/local/bin" "$dest/etc/systemd/system" "$dest/etc/default"
install -m 0755 "$bin" "$dest/usr/local/bin/.shoal.new"
mv -f "$dest/usr/local/bin/.shoal.new" "$dest/usr/local/bin/shoal"
install -m 0644 "$here/shoal.service" "$dest/etc/systemd/system/shoal.service"
if [ -e "$dest/etc/default/shoal" ]; then
  install -m 0644 "$here/shoal.default" "$dest/etc/default/shoal.dist"
  echo "kept /etc/default/shoal; the shipped version is in /etc/default/shoal.dist"
else
  install -m 0644 "$here/shoal.default" "$dest/etc/default/shoal"
fi

# Completions and the man page come from the binary itself. Each is written
# to a temp file first, so a binary that cannot generate one leaves nothing.
gen() { # gen DEST ARGS...: run the new binary with ARGS into DEST
  local out="$1" tmp
  shift
  install -d "$(dirname "$out")"
  tmp="$(mktemp)"
  if "$dest/usr/local/bin/shoal" "$@" >"$tmp" 2>/dev/null && [ -s "$tmp" ]; then
    install -m 0644 "$tmp" "$out"
  fi
  rm -f "$tmp"
}
# Man pages: one per command with `shoal man --dir`, else the main page.
man1="$dest/usr/local/share/man/man1"
install -d "$man1"
mantmp="$(mktemp -d)"
if "$dest/usr/local/bin/shoal" man --dir "$mantmp" >/dev/null 2>&1 &&
  [ -s "$mantmp/shoal.1" ]; then
  install -m 0644 "$mantmp"/*.1 "$man1/"
else
  gen "$man1/shoal.1" man
fi
rm -rf "$mantmp"
# /usr/local/share is on the default search path of all three shells.
gen "$dest/usr/local/share/bash-completion/completions/shoal" completion bash
gen "$dest/usr/local/share/zsh/site-functions/_shoal" completion zsh
gen "$dest/usr/local/share/fish/vendor_completions.d/shoal.fish" completion fish

# What the daemon needs from the machine, checked now rather than at start.
if [ -z "$dest" ]; then
  command -v containerd >/dev/null 2>&1 ||
    warn "containerd is not installed: apt-get install containerd runc"
  if [ -f /sys/fs/cgroup/cgroup.controllers ] &&
    ! grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
    warn "the cgroup v2 memory controller is off, so memory limits cannot work;" \
      "add 'cgroup_enable=memory' to the kernel command line (/boot/firmware/cmdline.txt" \
      "or /boot/cmdline.txt) and reboot (see docs/pi.md)"
  fi
fi

systemd_runs=no
[ -z "$dest" ] && [ -d /run/systemd/system ] && systemd_runs=yes
if [ "$systemd_runs" = yes ]; then
  systemctl daemon-reload
  if [ "$now" = yes ]; then
    systemctl enable --now shoal
  fi
elif [ "$now" = yes ]; then
  warn "systemd is not running here: --now ignored"
fi

cat <<NEXT

shoal is installed. Next steps:
  1. Edit /etc/default/shoal (e.g. SHOAL_OPTS="--advertise <this node's IP>").
NEXT
if [ "$now" = yes ] && [ "$systemd_runs" = yes ]; then
  echo "  2. The daemon is running: systemctl status shoal; journalctl -u shoal -f"
  echo "     (after editing /etc/default/shoal: systemctl restart shoal)"
else
  echo "  2. Start it now and at boot: systemctl enable --now shoal"
  echo "     Logs: journalctl -u shoal -f"
fi
cat <<NEXT
  3. On the first manager: shoal init   (more nodes: see README.md)
  Upgrading later: run this script again with the new binary, then
  systemctl restart shoal (containers keep running).
NEXT
