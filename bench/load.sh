#!/usr/bin/env bash
# Load on the read paths clients hit hardest, over S3, with hey (Debian's `hey`, an HTTP load
# generator): CONNECTIONS (default 64) connections for DURATION (default 30s) each of
#   manifest GET    GET /v2/<name>/manifests/<tag>   (an OCI manifest; one storage read)
#   blob HEAD       HEAD /v2/<name>/blobs/<digest>   (one storage HEAD)
#   blob GET (307)  GET /v2/<name>/blobs/<digest>    (the redirect to a presigned URL; hey does
#                                                     not follow it: the bytes come from S3)
# reporting requests/s, p50 and p99 latency, errors (any other status, or a failed request:
# must be 0; the script exits 1 otherwise) and the server's peak RSS (VmHWM) after each.
#
# The S3 server: BERTH_TEST_S3_ENDPOINT/BERTH_TEST_S3_BUCKET and AWS credentials if set (e.g.
# MinIO), else scripts/s3-servers starts s3s-fs (installing it if needed). Builds the release
# binary when missing (BERTH_BIN picks another). Usage: bench/load.sh
# DURATION=5s CONNECTIONS=16 bench/load.sh (the test suite runs it so, on the debug binary).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
duration="${DURATION:-30s}"
connections="${CONNECTIONS:-64}"
bin="${BERTH_BIN:-$repo/target/release/berth}"
bench_parent="${BENCH_DIR:-$repo/target}"
bench_name=bench/load.sh

command -v hey >/dev/null || { echo "$bench_name: needs hey (apt-get install hey)" >&2; exit 1; }
if [ ! -x "$bin" ]; then
  echo "$bench_name: building the release binary" >&2
  (cd "$repo" && cargo build --release -p berth-server)
fi
# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"
s3_servers_start

start_server load --storage s3 --s3-bucket "$BERTH_TEST_S3_BUCKET" --s3-endpoint "$BERTH_TEST_S3_ENDPOINT" \
  --s3-path-style --s3-prefix "bench-load-$$" --auth none

# An image to read: a 1 MiB layer, a config, a manifest tagged v1.
upload() { # file media-type -> digest (pushed as one monolithic POST)
  local digest status
  digest="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
  status="$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/octet-stream' \
    --data-binary "@$1" "$base/v2/bench/load/blobs/uploads/?digest=$digest")"
  [ "$status" = 201 ] || { echo "$bench_name: blob POST answered $status" >&2; exit 1; }
  echo "$digest"
}
head -c 1048576 /dev/urandom >"$work/layer"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$work/config"
layer="$(upload "$work/layer")"
config="$(upload "$work/config")"
cat >"$work/manifest" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$config","size":$(stat -c %s "$work/config")},
 "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"$layer","size":1048576}]}
EOF
manifest_type=application/vnd.oci.image.manifest.v1+json
status="$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H "Content-Type: $manifest_type" \
  --data-binary "@$work/manifest" "$base/v2/bench/load/manifests/v1")"
[ "$status" = 201 ] || { echo "$bench_name: manifest PUT answered $status" >&2; exit 1; }

rows=()
failed=0
# Runs hey with the arguments after the first two (name, expected status) and adds a row.
load() {
  local name="$1" expected="$2" out rps p50 p99 ok total errors
  shift 2
  echo "$bench_name: $name, $connections connections for $duration" >&2
  out="$(hey -z "$duration" -c "$connections" "$@")"
  rps="$(awk '/Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")"
  p50="$(awk '/ 50%% in / || / 50% in / { printf "%.2f", $3 * 1000 }' <<<"$out")"
  p99="$(awk '/ 99%% in / || / 99% in / { printf "%.2f", $3 * 1000 }' <<<"$out")"
  ok="$(awk -v s="[$expected]" '$1 == s { print $2 }' <<<"$out")"
  # Every request hey made: each status line, and each error line ("[count] message").
  total="$(awk '/Status code distribution:/ { s = 1; next } /Error distribution:/ { s = 0; e = 1; next }
    s && $1 ~ /^\[[0-9]+\]$/ { n += $2 } e && $1 ~ /^\[[0-9]+\]$/ { gsub(/[][]/, "", $1); n += $1 } END { print n + 0 }' <<<"$out")"
  errors=$((total - ${ok:-0}))
  [ "$errors" = 0 ] && [ "${ok:-0}" -gt 0 ] || { failed=1; echo "$out" >&2; }
  rows+=("$(printf '%-15s %9s %9s %9s %8s %8s %9s' "$name" "$rps" "$p50" "$p99" "${ok:-0}" "$errors" "$(peak_rss_mib)")")
}

load "manifest GET" 200 -H "Accept: $manifest_type" "$base/v2/bench/load/manifests/v1"
load "blob HEAD" 200 -m HEAD "$base/v2/bench/load/blobs/$layer"
load "blob GET (307)" 307 -disable-redirects "$base/v2/bench/load/blobs/$layer"

echo
echo "berth load benchmark ($(nproc) cores, ${BERTH_TEST_S3_SERVER:-S3} at $BERTH_TEST_S3_ENDPOINT, $("$bin" --version), $connections connections, $duration each)"
printf '%-15s %9s %9s %9s %8s %8s %9s\n' operation "req/s" "p50 ms" "p99 ms" answered errors "RSS MiB"
printf '%s\n' "${rows[@]}"
exit "$failed"
