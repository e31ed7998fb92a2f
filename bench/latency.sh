#!/usr/bin/env bash
# What users wait for when S3 is some way off: every S3 request (berth's, and the clients'
# presigned GETs after a redirect) is held DELAYS_MS milliseconds (default "0 20": a local
# server, then about what S3 answers in) by a proxy (crates/berth-s3/examples/delay_proxy.rs)
# in front of the local S3 server. For each delay, through `berth serve --storage s3`:
#   push            skopeo copy (--preserve-digests) of a 5-layer image (layers of 1, 2, 4, 8, 16 MiB) from an OCI
#                   layout, fresh
#   pull            skopeo copy of it back into a new layout
#   manifest GET    one client, one request at a time (hey -c 1): p50
#   blob HEAD       the same
# each with the S3 calls berth made (the `storage_calls=` of its request log lines).
#
# The S3 server: BERTH_TEST_S3_ENDPOINT/BERTH_TEST_S3_BUCKET and AWS credentials if set (e.g.
# MinIO), else scripts/s3-servers starts s3s-fs (installing it if needed). Needs skopeo and hey
# (apt-get install skopeo hey). Builds the release binaries when missing (BERTH_BIN picks
# another berth; PROXY_BIN another proxy). Usage: bench/latency.sh    DELAYS_MS="0 50" bench/latency.sh
# LAYERS_MIB="1 1" REQUESTS=20 bench/latency.sh (the test suite runs it so, on debug binaries).
# With REGISTRY_V3 naming CNCF distribution's `registry` binary (v3; ../shared/conformance's build
# makes one), the same push and pull also go through it ("dist push", "dist pull").
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
delays="${DELAYS_MS:-0 20}"
layers="${LAYERS_MIB:-1 2 4 8 16}"
requests="${REQUESTS:-200}"
bin="${BERTH_BIN:-$repo/target/release/berth}"
proxy="${PROXY_BIN:-$repo/target/release/examples/delay_proxy}"
bench_parent="${BENCH_DIR:-$repo/target}"
bench_name=bench/latency.sh

for tool in skopeo hey; do
  command -v "$tool" >/dev/null || { echo "$bench_name: needs $tool (apt-get install $tool)" >&2; exit 1; }
done
if [ ! -x "$bin" ] || [ ! -x "$proxy" ]; then
  echo "$bench_name: building the release binaries" >&2
  (cd "$repo" && cargo build --release -p berth-server && cargo build --release -p berth-s3 --example delay_proxy)
fi
# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"
s3_servers_start

proxy_pid=""
stop_proxy() {
  if [ -n "$proxy_pid" ]; then
    kill "$proxy_pid" 2>/dev/null || true
    wait "$proxy_pid" 2>/dev/null || true
    proxy_pid=""
  fi
}
trap 'stop_server; stop_proxy; rm -rf "$work"' EXIT

# An OCI layout at $1 holding v1: one random file per layer, of the sizes in $layers (MiB);
# prints the manifest's digest, and leaves the first layer's in $work/first-layer.
make_layout() {
  local dir="$1" i=0 size digest hex descriptors="" config manifest
  mkdir -p "$dir/blobs/sha256" "$work/files"
  blob() { # file -> digest, the file moved into the layout
    hex="$(sha256sum "$1" | cut -d' ' -f1)"
    mv "$1" "$dir/blobs/sha256/$hex"
    echo "sha256:$hex"
  }
  for size in $layers; do
    head -c "$((size * 1048576))" /dev/urandom >"$work/files/layer$i.bin"
    tar -C "$work/files" -cf "$work/layer.tar" "layer$i.bin"
    rm "$work/files/layer$i.bin"
    size="$(stat -c %s "$work/layer.tar")"
    digest="$(blob "$work/layer.tar")"
    [ "$i" = 0 ] && echo "$digest" >"$work/first-layer"
    descriptors+="${descriptors:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$digest\",\"size\":$size}"
    i=$((i + 1))
  done
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$work/config"
  size="$(stat -c %s "$work/config")"
  config="{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$(blob "$work/config")\",\"size\":$size}"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
    "$config" "$descriptors" >"$work/manifest"
  size="$(stat -c %s "$work/manifest")"
  manifest="$(blob "$work/manifest")"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
    "$manifest" "$size" >"$dir/index.json"
  echo "$manifest"
}

# The S3 calls of the requests berth logged after line $1 of its log.
calls_since() {
  tail -n "+$(($1 + 1))" "$work/berth-$round.log" | grep -o 'storage_calls=[0-9]*' | cut -d= -f2 | awk '{ n += $1 } END { print n + 0 }'
}
log_lines() { wc -l <"$work/berth-$round.log"; }
p50() { awk '/ 50%% in / || / 50% in / { printf "%.2f", $3 * 1000 }'; }

rows=()
row() { rows+=("$(printf '%8s  %-14s %10s %10s %9s' "$@")"); }

# The same push and pull through distribution (REGISTRY_V3) on the same S3 server behind the
# same proxy, with its S3 driver (redirects on): $1 the delay, $2 the proxy's endpoint.
distribution() {
  local port config="$work/registry-$1.yml" t0
  port="$(free_port)"
  printf '%s\n' "version: 0.1" "log:" "  level: warn" "storage:" "  s3:" \
    "    accesskey: $AWS_ACCESS_KEY_ID" "    secretkey: $AWS_SECRET_ACCESS_KEY" "    region: us-east-1" \
    "    regionendpoint: $2" "    forcepathstyle: true" "    secure: false" "    bucket: $BERTH_TEST_S3_BUCKET" \
    "    rootdirectory: /bench-latency-dist-$$-$1" "http:" "  addr: 127.0.0.1:$port" >"$config"
  "$REGISTRY_V3" serve "$config" 2>"$work/registry-$1.log" &
  server_pid=$!
  wait_ok "http://127.0.0.1:$port/v2/"
  t0="$(now)"
  skopeo --insecure-policy copy -q --preserve-digests --dest-tls-verify=false "oci:$work/src-$1:v1" \
    "docker://127.0.0.1:$port/bench/latency:v1"
  row "$1" "dist push" "$(elapsed "$t0" "$(now)") s" "" "-"
  t0="$(now)"
  skopeo --insecure-policy copy -q --preserve-digests --src-tls-verify=false \
    "docker://127.0.0.1:$port/bench/latency:v1" "oci:$work/dist-back-$1:v1"
  row "$1" "dist pull" "$(elapsed "$t0" "$(now)") s" "" "-"
  stop_server
}

for delay in $delays; do
  round="delay-$delay"
  echo "$bench_name: $delay ms per S3 request" >&2
  "$proxy" "$BERTH_TEST_S3_ENDPOINT" "$delay" >"$work/proxy-$delay.out" &
  proxy_pid=$!
  endpoint=""
  for _ in $(seq 1 100); do
    endpoint="$(awk '/^listening / { print "http://" $2 }' "$work/proxy-$delay.out")"
    [ -n "$endpoint" ] && break
    sleep 0.05
  done
  [ -n "$endpoint" ] || { echo "$bench_name: the proxy did not start" >&2; exit 1; }
  start_server "$round" --storage s3 --s3-bucket "$BERTH_TEST_S3_BUCKET" --s3-endpoint "$endpoint" \
    --s3-path-style --s3-prefix "bench-latency-$$-$delay" --auth none
  manifest="$(make_layout "$work/src-$delay")"
  layer="$(cat "$work/first-layer")"
  host="${base#http://}"

  mark="$(log_lines)"
  t0="$(now)"
  skopeo --insecure-policy copy -q --preserve-digests --dest-tls-verify=false "oci:$work/src-$delay:v1" "docker://$host/bench/latency:v1"
  row "$delay" "push" "$(elapsed "$t0" "$(now)") s" "" "$(calls_since "$mark")"

  mark="$(log_lines)"
  t0="$(now)"
  skopeo --insecure-policy copy -q --preserve-digests --src-tls-verify=false "docker://$host/bench/latency:v1" "oci:$work/back-$delay:v1"
  row "$delay" "pull" "$(elapsed "$t0" "$(now)") s" "" "$(calls_since "$mark")"
  grep -q "${manifest#sha256:}" "$work/back-$delay/index.json" || { echo "$bench_name: the pull differs: $manifest vs $(cat "$work/back-$delay/index.json")" >&2; exit 1; }

  mark="$(log_lines)"
  ms="$(hey -n "$requests" -c 1 -H "Accept: application/vnd.oci.image.manifest.v1+json" \
    "$base/v2/bench/latency/manifests/v1" | p50)"
  row "$delay" "manifest GET" "" "$ms ms" "$(awk -v c="$(calls_since "$mark")" -v n="$requests" 'BEGIN { printf "%.1f", c / n }')"

  mark="$(log_lines)"
  ms="$(hey -n "$requests" -c 1 -m HEAD "$base/v2/bench/latency/blobs/$layer" | p50)"
  row "$delay" "blob HEAD" "" "$ms ms" "$(awk -v c="$(calls_since "$mark")" -v n="$requests" 'BEGIN { printf "%.1f", c / n }')"

  stop_server
  if [ -n "${REGISTRY_V3:-}" ]; then
    distribution "$delay" "$endpoint"
  fi
  stop_proxy
done

echo
echo "berth latency benchmark ($(nproc) cores, ${BERTH_TEST_S3_SERVER:-S3} at $BERTH_TEST_S3_ENDPOINT behind a delaying proxy, $("$bin" --version), layers of $layers MiB)"
printf '%8s  %-14s %10s %10s %9s\n' "delay ms" operation time p50 "S3 calls"
printf '%s\n' "${rows[@]}"
