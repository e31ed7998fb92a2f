#!/usr/bin/env bash
# Blob push/pull through `berth serve --storage s3` against the same transfers made directly with
# aws-sdk-s3 (crates/berth-s3/examples/raw_transfer.rs) on the same S3 server, and the server's
# peak memory. For each size (SIZE_MIB, default 256, then SIZE2_MIB, default 1024):
#   raw upload    multipart upload of the file, 8 MiB parts, 3 in flight (as berth streams)
#   raw copy      server-side CopyObject of it (what berth's commit costs at least)
#   upload        POST + one streamed PATCH through berth
#   commit        PUT ?digest= (verify from the saved hash state, complete, server-side copy)
#   raw GET       curl signing its own GET (--aws-sigv4) of the blob's object in the bucket
#   pull (307)    curl GET through berth, following its 307 to the presigned URL: the same
#                 client and object as the raw GET, both into /dev/null (the pull in push_and_pull
#                 checked the bytes); both are run 3 times, alternately, and the median is shown
# "berth/raw" is raw seconds / berth seconds: 1.00 means as fast as the SDK (or curl) alone.
#
# The S3 server: BERTH_TEST_S3_ENDPOINT/BERTH_TEST_S3_BUCKET and AWS credentials if set (e.g.
# MinIO), else scripts/s3-servers starts s3s-fs (installing it if needed). Builds the release
# binaries when missing. Usage: bench/s3.sh      SIZE_MIB=64 SIZE2_MIB=256 bench/s3.sh
# UPLOAD_HOST=1 runs berth as an upload host: with authentication and --upload-url pointing at
# itself, the POST (with credentials) answers a Location with a capability, and the PATCH and PUT
# carry no credentials, as clients send them to an upload host.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
size1="${SIZE_MIB:-256}"
size2="${SIZE2_MIB:-1024}"
bin="${BERTH_BIN:-$repo/target/release/berth}"
raw="$repo/target/release/examples/raw_transfer"
bench_parent="${BENCH_DIR:-$repo/target}"
bench_name=bench/s3.sh

if [ ! -x "$bin" ] || [ ! -x "$raw" ]; then
  echo "$bench_name: building the release binaries" >&2
  (cd "$repo" && cargo build --release -p berth-server && cargo build --release -p berth-s3 --example raw_transfer)
fi
# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"
s3_servers_start

# Seconds a command takes (its output discarded; a failure stops the benchmark).
timed() {
  local t0
  t0="$(now)"
  "$@" >/dev/null || { echo "$bench_name: a timed $1 failed" >&2; exit 1; }
  elapsed "$t0" "$(now)"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v raw="$1" -v ours="$2" 'BEGIN { printf "%.2f", (ours > 0) ? raw / ours : 0 }'; }
mbs() { awk -v m="$1" -v s="$2" 'BEGIN { printf "%.1f", (s > 0) ? m * 1048576 / 1e6 / s : 0 }'; }

table=()
line() { table+=("$(printf '%-14s %6s %9s %9s %10s' "$@")"); }

round() {
  local mib="$1" file="$work/blob-$1" prefix="bench-$1-$$" digest raw_up raw_copy raw_get gets=() pulls=() i
  echo "$bench_name: round of $mib MiB" >&2
  head -c "$((mib * 1048576))" /dev/urandom >"$file"
  digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
  while read -r op secs; do
    case "$op" in upload) raw_up="$secs" ;; copy) raw_copy="$secs" ;; esac
  done < <("$raw" "$BERTH_TEST_S3_ENDPOINT" "$BERTH_TEST_S3_BUCKET" "$file" 8)
  start_server "$mib" --storage s3 --s3-bucket "$BERTH_TEST_S3_BUCKET" --s3-endpoint "$BERTH_TEST_S3_ENDPOINT" \
    --s3-path-style --s3-prefix "$prefix" "${auth[@]}"
  local rss_idle
  rss_idle="$(peak_rss_mib)"
  push_and_pull "$file" "$digest"
  rm -f "$file"
  for i in 1 2 3; do
    gets+=("$(timed curl -sSf --aws-sigv4 "aws:amz:${AWS_REGION:-us-east-1}:s3" \
      --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -o /dev/null \
      "$BERTH_TEST_S3_ENDPOINT/$BERTH_TEST_S3_BUCKET/$prefix/blobs/sha256/${digest#sha256:}")")
    pulls+=("$(timed curl -sSfL "${creds[@]}" -o /dev/null "$base/v2/bench/blob/blobs/$digest")")
  done
  raw_get="$(median "${gets[@]}")" pull_s="$(median "${pulls[@]}")"
  line "raw upload" "$mib" "$raw_up" "$(mbs "$mib" "$raw_up")" ""
  line "upload" "$mib" "$upload_s" "$(mbs "$mib" "$upload_s")" "$(ratio "$raw_up" "$upload_s")"
  line "raw copy" "$mib" "$raw_copy" "$(mbs "$mib" "$raw_copy")" ""
  line "commit" "$mib" "$commit_s" "$(mbs "$mib" "$commit_s")" "$(ratio "$raw_copy" "$commit_s")"
  line "push" "$mib" "$push_s" "$(mbs "$mib" "$push_s")" "$(ratio "$raw_up" "$push_s")"
  line "raw GET" "$mib" "$raw_get" "$(mbs "$mib" "$raw_get")" ""
  line "pull (307)" "$mib" "$pull_s" "$(mbs "$mib" "$pull_s")" "$(ratio "$raw_get" "$pull_s")"
  rss+=("$(printf '%6s MiB blob: peak RSS %s MiB (%s MiB idle)' "$mib" "$(peak_rss_mib)" "$rss_idle")")
  stop_server
}

auth=(--auth none)
if [ "${UPLOAD_HOST:-}" = 1 ]; then
  port="$(free_port)"
  listen="127.0.0.1:$port"
  printf '[users]\n%s\n[[rules]]\nrepositories = ["**"]\nwho = ["user:bench"]\nactions = ["*"]\n' \
    "$(echo bench-password | "$bin" user bench --bcrypt)" >"$work/auth.toml"
  head -c 48 /dev/urandom | base64 >"$work/secret"
  auth=(--auth "$work/auth.toml" --auth-secret-file "$work/secret" --upload-url "http://$listen")
  creds=(-u bench:bench-password)
fi

rss=()
round "$size1"
round "$size2"

echo
echo "berth S3 benchmark ($(nproc) cores, ${BERTH_TEST_S3_SERVER:-S3} at $BERTH_TEST_S3_ENDPOINT, $("$bin" --version)${UPLOAD_HOST:+, as an upload host})"
printf '%-14s %6s %9s %9s %10s\n' operation MiB seconds MB/s berth/raw
printf '%s\n' "${table[@]}"
echo
echo "server peak RSS (VmHWM), a fresh process per round:"
printf '%s\n' "${rss[@]}"
