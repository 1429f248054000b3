#!/usr/bin/env bash
# Builds a tiny OCI image (OCI-layout tarball) from a static busybox, with no
# registry and no docker: one layer holding bin/busybox, symlinks for common
# applets and a minimal etc/passwd and etc/group.
#
#   bash tests/mkimage.sh OUTPUT.tar NAME[:TAG] [ARCH] [BUSYBOX_PATH]
#
#   OUTPUT.tar    the tarball to write (what `shoal image load` and
#                 `ctr images import` take)
#   NAME[:TAG]    the image's name, normalized as docker does:
#                 `demo-busybox` becomes `docker.io/library/demo-busybox:latest`
#   ARCH          OCI arch of the image (amd64, arm64, arm); default: this
#                 machine's
#   BUSYBOX_PATH  a statically linked busybox for ARCH; default /bin/busybox
#                 (Debian's busybox-static). Required when ARCH is not this
#                 machine's.
#
# Needs bash, tar, sha256sum and coreutils. The output is reproducible: the
# same busybox gives the same digests.
set -euo pipefail

usage() {
  echo "usage: bash tests/mkimage.sh OUTPUT.tar NAME[:TAG] [ARCH] [BUSYBOX_PATH]" >&2
  exit 2
}

die() {
  echo "mkimage.sh: $*" >&2
  exit 1
}

if [ $# -lt 2 ] || [ $# -gt 4 ]; then usage; fi
out=$1
ref=$2

# --- the name, normalized as docker does ------------------------------------
[[ $ref =~ ^[a-z0-9][a-z0-9._/:-]*$ ]] ||
  die "invalid image name '$ref': lowercase letters, digits and . _ - / : only"
repo=$ref
tag=latest
last=${ref##*/}
if [[ $last == *:* ]]; then
  tag=${last##*:}
  repo=${ref%:*}
fi
[ -n "$tag" ] || die "invalid image name '$ref': empty tag"
first=${repo%%/*}
if [[ $repo != */* ]]; then
  repo=docker.io/library/$repo
elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
  repo=docker.io/$repo
fi
name=$repo:$tag

# --- the platform ------------------------------------------------------------
norm_arch() {
  case $1 in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64 | armv8*) echo arm64 ;;
    armv7* | armv6* | armhf | arm) echo arm ;;
    i?86 | 386) echo 386 ;;
    *) echo "$1" ;;
  esac
}
host_arch=$(norm_arch "$(uname -m)")
arch=$(norm_arch "${3:-$host_arch}")
variant=
[ "$arch" = arm ] && variant=v7
[ "$arch" = arm64 ] && variant=v8

if [ $# -ge 4 ]; then
  busybox=$4
elif [ "$arch" = "$host_arch" ]; then
  busybox=/bin/busybox
else
  die "ARCH $arch is not this machine's ($host_arch): give BUSYBOX_PATH, a static busybox for $arch"
fi
[ -f "$busybox" ] || die "$busybox not found: install Debian's busybox-static (apt-get install busybox-static)"
if [ "$arch" = "$host_arch" ] && ldd "$busybox" >/dev/null 2>&1; then
  die "$busybox is dynamically linked and would not run alone in an image: install busybox-static"
fi

# --- the root filesystem -----------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
blobs=$work/oci/blobs/sha256
mkdir -p "$root"/{bin,etc,root,tmp,proc,sys,dev} "$blobs"
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
install -m 0755 "$busybox" "$root/bin/busybox"
applets="sh ash cat echo printf sleep hostname env id ps top kill ls mkdir rm cp mv
ln touch chmod chown cut head tail grep sed awk sort uniq wc tr tee yes seq date
uname true false test [ expr basename dirname pwd whoami stat find xargs df du
free mount umount timeout nohup wget nc ping ip ifconfig nslookup httpd vi less
more which tar gzip gunzip md5sum sha256sum usleep watch"
for a in $applets; do
  ln -s busybox "$root/bin/$a"
done
printf '%s\n' \
  'root:x:0:0:root:/root:/bin/sh' \
  'daemon:x:1:1:daemon:/usr/sbin:/bin/false' \
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'daemon:x:1:' 'nogroup:x:65534:' >"$root/etc/group"

# --- blobs -------------------------------------------------------------------
# Moves file $1 into the blob store; prints "sha256:<hex> <size>".
put_blob() {
  local hex size
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$blobs/$hex"
  echo "sha256:$hex $size"
}

# The layer: an uncompressed tar, reproducible (sorted, fixed owner and mtime),
# so its digest is also its diff id.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$root" -cf "$work/layer.tar" bin etc root tmp proc sys dev
read -r layer_digest layer_size < <(put_blob "$work/layer.tar")

platform_json="\"architecture\":\"$arch\",\"os\":\"linux\""
[ -n "$variant" ] && platform_json="$platform_json,\"variant\":\"$variant\""

printf '{%s,"config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["%s"]},"history":[{"created_by":"tests/mkimage.sh from %s"}]}' \
  "$platform_json" "$layer_digest" "$(basename "$busybox")" >"$work/config.json"
read -r config_digest config_size < <(put_blob "$work/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
read -r manifest_digest manifest_size < <(put_blob "$work/manifest.json")

# index.json names the image twice, as `docker save` (v25+) does:
# io.containerd.image.name holds the full name, and
# org.opencontainers.image.ref.name holds it too (a full name is allowed
# there, and tools that read only that annotation then get the whole name).
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"},"platform":{%s}}]}\n' \
  "$manifest_digest" "$manifest_size" "$name" "$name" "$platform_json" >"$work/oci/index.json"
printf '{"imageLayoutVersion":"1.0.0"}\n' >"$work/oci/oci-layout"

mkdir -p "$(dirname "$out")"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
  -C "$work/oci" -cf "$work/out.tar" oci-layout index.json blobs
mv "$work/out.tar" "$out"
echo "$out: $name ($arch, manifest $manifest_digest)"
