# Shared by bench/pull and bench/lan: a test image made on the spot, and
# a docker-registry on loopback. Sourced; expects $work (a temp dir).

# --- an OCI image with one uncompressed layer of N MB --------------------------
make_image() { # DIR MB
  local dir=$1 size=$2
  mkdir -p "$dir/rootfs/bin" "$dir/layout/blobs/sha256"
  cp /bin/busybox "$dir/rootfs/bin/busybox"
  head -c "$((size * 1024 * 1024))" /dev/urandom >"$dir/rootfs/filler"
  tar -C "$dir/rootfs" --owner=0 --group=0 -cf "$dir/layer.tar" .
  local layer; layer=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
  mv "$dir/layer.tar" "$dir/layout/blobs/sha256/$layer"
  local arch; arch=$(dpkg --print-architecture)
  printf '{"architecture":"%s","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$layer" >"$dir/config.json"
  local config; config=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
  mv "$dir/config.json" "$dir/layout/blobs/sha256/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config" "$(stat -c %s "$dir/layout/blobs/sha256/$config")" "$layer" "$(stat -c %s "$dir/layout/blobs/sha256/$layer")" >"$dir/manifest.json"
  local manifest; manifest=$(sha256sum "$dir/manifest.json" | cut -d' ' -f1)
  local msize; msize=$(stat -c %s "$dir/manifest.json")
  mv "$dir/manifest.json" "$dir/layout/blobs/sha256/$manifest"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1"}}]}' \
    "$manifest" "$msize" >"$dir/layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/layout/oci-layout"
  rm -rf "$dir/rootfs"
}

# --- a registry on loopback ------------------------------------------------------
# Sets reg (HOST:PORT) and reg_pid. ACCESS_LOG=yes: the access log (one
# combined-format line per request) goes to $work/registry.log.
start_registry() {
  local port accesslog=true
  [ "${ACCESS_LOG:-}" = yes ] && accesslog=false
  port=$(shuf -i 20000-60000 -n 1)
  cat >"$work/registry.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: $accesslog}}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port, secret: bench}
EOF
  docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  reg_pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  reg=127.0.0.1:$port
}

push() { # NAME MB: bench/NAME:1, one layer of MB MB
  make_image "$work/img-$1" "$2"
  skopeo --insecure-policy copy --quiet "oci:$work/img-$1/layout:1" "docker://$reg/bench/$1:1" --dest-tls-verify=false
  rm -rf "$work/img-$1"
}
