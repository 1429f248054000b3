#!/usr/bin/env bash
# Installs protoc in a cross image (see Cross.toml). cross runs this as root
# while it builds the image, as `./pre-build-script <target triple>`.
#
# containerd-client's build script runs protoc with
# --experimental_allow_proto3_optional, which needs protoc >= 3.12. The
# distribution's protobuf-compiler is used when it is new enough (Ubuntu
# 22.04 and later); older images (Ubuntu 20.04 has 3.6) get the upstream
# protoc release for the image's CPU in /usr/local instead.
set -euo pipefail

PROTOC_VERSION=25.1 # an upstream protobuf release, used only as the fallback

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends protobuf-compiler ca-certificates curl unzip >/dev/null

# "libprotoc 3.6.1" -> 3 6
new_enough() {
  local v major minor
  v="$(protoc --version 2>/dev/null | awk '{print $2}')" || return 1
  major="${v%%.*}"
  minor="$(echo "$v" | cut -d. -f2)"
  [ -n "$major" ] || return 1
  [ "$major" -gt 3 ] || { [ "$major" -eq 3 ] && [ "${minor:-0}" -ge 12 ]; }
}

if new_enough; then
  echo "pre-build: using $(protoc --version) from the distribution"
  exit 0
fi

# Only one protoc on PATH: drop the old one before installing the release.
apt-get remove -y -qq protobuf-compiler >/dev/null
case "$(uname -m)" in
  x86_64) arch=x86_64 ;;
  aarch64) arch=aarch_64 ;;
  *) echo "pre-build: no protoc release for $(uname -m)" >&2; exit 1 ;;
esac
zip="protoc-${PROTOC_VERSION}-linux-${arch}.zip"
tmp="$(mktemp -d)"
curl -fsSL --retry 3 -o "$tmp/$zip" \
  "https://github.com/protocolbuffers/protobuf/releases/download/v${PROTOC_VERSION}/${zip}"
# bin/protoc and include/google/protobuf/*.proto (the well-known types).
unzip -q -o "$tmp/$zip" -d /usr/local bin/protoc 'include/*'
chmod 0755 /usr/local/bin/protoc
rm -rf "$tmp"
hash -r
new_enough || { echo "pre-build: protoc is still too old: $(protoc --version)" >&2; exit 1; }
echo "pre-build: installed $(command -v protoc): $(protoc --version)"
