#!/usr/bin/env bash
# Checks systemd/shoal.service with `systemd-analyze verify`, as CI does.
#
#   systemd/verify.sh [path/to/shoal]
#
# The unit names /usr/local/bin/shoal, which a build machine does not have,
# so a copy of it is verified with ExecStart pointed at a built binary
# (default: target/release/shoal, else target/debug/shoal). If that binary
# can print its man page (`shoal man`), the page is put on MANPATH so the
# unit's Documentation=man:shoal(1) is checked too; otherwise that one
# check is skipped, and this says so.
#
# Needs: systemd-analyze (Debian `systemd`) and containerd.service (Debian
# `containerd`), which the unit requires. No running systemd is needed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
unit="$root/systemd/shoal.service"

die() { echo "verify.sh: $*" >&2; exit 1; }

bin="${1:-}"
if [ -z "$bin" ]; then
  for b in "$root/target/release/shoal" "$root/target/debug/shoal"; do
    [ -x "$b" ] && { bin="$b"; break; }
  done
fi
[ -n "$bin" ] || die "no built shoal binary: run 'cargo build' first, or pass its path"
[ -x "$bin" ] || die "$bin is not an executable file"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

command -v systemd-analyze >/dev/null 2>&1 ||
  die "systemd-analyze not found: apt-get install systemd"
unit_known=no
for d in /etc/systemd/system /run/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
  [ -e "$d/containerd.service" ] && unit_known=yes
done
[ "$unit_known" = yes ] ||
  die "containerd.service not found, and shoal.service requires it: apt-get install containerd"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed "s#^ExecStart=/usr/local/bin/shoal #ExecStart=$bin #" "$unit" >"$work/shoal.service"
grep -q "^ExecStart=$bin daemon" "$work/shoal.service" ||
  die "could not point ExecStart at $bin (did the ExecStart line change?)"

man_flag=()
mkdir -p "$work/man/man1"
if "$bin" man >"$work/man/man1/shoal.1" 2>/dev/null && [ -s "$work/man/man1/shoal.1" ] &&
  command -v man >/dev/null 2>&1; then
  export MANPATH="$work/man"
else
  echo "verify.sh: note: not checking Documentation=man:shoal(1) ('shoal man' or man(1) unavailable)"
  man_flag=(--man=no)
fi

# systemd-analyze exits non-zero on errors, but only warns (exit 0) about an
# unknown key or a bad value, which systemd would then ignore. A clean unit
# prints nothing, so any line about shoal.service fails the check; lines
# about other units on this machine are shown but do not count.
status=0
out="$(systemd-analyze verify "${man_flag[@]}" "$work/shoal.service" 2>&1)" || status=$?
if [ -n "$out" ]; then
  echo "${out//$work\//systemd/}" >&2
fi
if [ "$status" -ne 0 ] || grep -q "shoal\.service" <<<"$out"; then
  die "systemd-analyze verify found problems in systemd/shoal.service"
fi
echo "systemd/shoal.service: systemd-analyze verify passed (ExecStart=$bin)"
