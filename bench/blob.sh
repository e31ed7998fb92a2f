#!/usr/bin/env bash
# Blob push/pull throughput of `berth serve --storage fs` against a plain copy on the same disk,
# and the server's peak memory, which must not grow with the blob size.
#
# For each size (SIZE_MIB, default 256, then SIZE2_MIB, default 64) a fresh release server is
# started on a free loopback port with a fresh root, and a random file of that size is:
#   copy   copied on the same disk with dd conv=fsync (berth fsyncs what it stores, too)
#   upload POST a session, then one streamed PATCH of the whole file (no Content-Range)
#   commit PUT ?digest=sha256:... (verification and making the blob visible)
#   push   upload + commit
#   pull   GET of the blob into a file (not fsynced), checked against the digest
# and the server's VmHWM (peak RSS) is read from /proc after the round.
#
# Needs curl, coreutils and /proc. Builds the release binary (cargo build --release -p
# berth-server) only when target/release/berth is missing; BERTH_BIN overrides the binary.
# Temp files go to a directory under $BENCH_DIR (default: the repo's target/, so the same disk
# as the repo) and are removed on exit.
#
# Usage: bench/blob.sh            SIZE_MIB=1024 SIZE2_MIB=128 bench/blob.sh
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
size1="${SIZE_MIB:-256}"
size2="${SIZE2_MIB:-64}"
bin="${BERTH_BIN:-$repo/target/release/berth}"
bench_parent="${BENCH_DIR:-$repo/target}"

for tool in curl dd sha256sum awk; do
  command -v "$tool" >/dev/null || { echo "bench/blob.sh: $tool is required" >&2; exit 1; }
done
if [ ! -x "$bin" ]; then
  if [ -n "${BERTH_BIN:-}" ]; then echo "bench/blob.sh: BERTH_BIN=$bin is not executable" >&2; exit 1; fi
  echo "bench/blob.sh: building the release binary" >&2
  (cd "$repo" && cargo build --release -p berth-server)
fi

mkdir -p "$bench_parent"
work="$(mktemp -d "$bench_parent/berth-bench.XXXXXX")"
server_pid=""

stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# Starts a server on a fresh root; sets server_pid and base.
start_server() {
  local root="$work/root-$1" log="$work/berth-$1.log" addr="" i
  "$bin" serve --listen 127.0.0.1:0 --storage fs --root "$root" --log-format text 2>"$log" &
  server_pid=$!
  for i in $(seq 1 300); do
    addr="$(grep -o 'berth listening addr=[0-9.:]*' "$log" | head -1 | cut -d= -f2 || true)"
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; echo "bench/blob.sh: berth exited" >&2; exit 1; }
    sleep 0.05
  done
  [ -n "$addr" ] || { cat "$log" >&2; echo "bench/blob.sh: berth did not start" >&2; exit 1; }
  base="http://$addr"
  for i in $(seq 1 100); do
    curl -sf -o /dev/null "$base/v2/" && return 0
    sleep 0.05
  done
  echo "bench/blob.sh: $base/v2/ does not answer" >&2
  exit 1
}

peak_rss_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status"; }

rows=()
row() { # operation MiB seconds copy_seconds
  local mbs ratio
  mbs="$(awk -v m="$2" -v s="$3" 'BEGIN { printf "%.1f", (s > 0) ? m * 1048576 / 1e6 / s : 0 }')"
  ratio="$(awk -v s="$3" -v c="$4" 'BEGIN { printf "%.2f", (c > 0) ? s / c : 0 }')"
  rows+=("$(printf '%-8s %8s %9s %9s %10s' "$1" "$2" "$3" "$mbs" "$ratio")")
}

# One round: a fresh server, a random file of $1 MiB, copy/push/pull, peak RSS.
round() {
  local mib="$1" file="$work/blob-$1" digest t0 t1 t2 t3 status headers location loc_path
  echo "bench/blob.sh: round of $mib MiB" >&2
  head -c "$((mib * 1048576))" /dev/urandom >"$file"
  digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
  start_server "$mib"
  local rss_idle
  rss_idle="$(peak_rss_mib)"

  t0="$(now)"
  dd if="$file" of="$work/copy-$mib" bs=8M conv=fsync status=none
  t1="$(now)"
  local copy_s
  copy_s="$(elapsed "$t0" "$t1")"
  rm -f "$work/copy-$mib"

  headers="$work/headers"
  t0="$(now)"
  status="$(curl -sS -o /dev/null -D "$headers" -w '%{http_code}' -X POST "$base/v2/bench/blob/blobs/uploads/")"
  [ "$status" = 202 ] || { echo "POST answered $status" >&2; exit 1; }
  location="$(awk 'tolower($1) == "location:" { print $2 }' "$headers" | tr -d '\r')"
  case "$location" in http*) loc_path="$location" ;; *) loc_path="$base$location" ;; esac
  # -T streams the file (no Content-Range); "Expect:" skips curl's 100-continue wait.
  status="$(curl -sS -o /dev/null -w '%{http_code}' -X PATCH -H 'Expect:' \
    -H 'Content-Type: application/octet-stream' -T "$file" "$loc_path")"
  [ "$status" = 202 ] || { echo "PATCH answered $status" >&2; exit 1; }
  t1="$(now)"
  case "$loc_path" in *\?*) loc_path="$loc_path&digest=$digest" ;; *) loc_path="$loc_path?digest=$digest" ;; esac
  status="$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "$loc_path")"
  [ "$status" = 201 ] || { echo "PUT answered $status" >&2; exit 1; }
  t2="$(now)"
  curl -sSf -o "$work/pulled-$mib" "$base/v2/bench/blob/blobs/$digest"
  t3="$(now)"
  [ "sha256:$(sha256sum "$work/pulled-$mib" | cut -d' ' -f1)" = "$digest" ] || {
    echo "bench/blob.sh: the pulled blob differs from the pushed file" >&2
    exit 1
  }
  rm -f "$work/pulled-$mib" "$file"

  row copy "$mib" "$copy_s" "$copy_s"
  row upload "$mib" "$(elapsed "$t0" "$t1")" "$copy_s"
  row commit "$mib" "$(elapsed "$t1" "$t2")" "$copy_s"
  row push "$mib" "$(elapsed "$t0" "$t2")" "$copy_s"
  row pull "$mib" "$(elapsed "$t2" "$t3")" "$copy_s"
  rss+=("$(printf '%6s MiB blob: peak RSS %s MiB (%s MiB idle)' "$mib" "$(peak_rss_mib)" "$rss_idle")")
  stop_server
  rm -rf "$work/root-$mib"
}

rss=()
round "$size1"
round "$size2"

echo
echo "berth blob benchmark ($(nproc) cores, $(df -P "$work" | awk 'NR == 2 { print $1 }'), $("$bin" --version))"
printf '%-8s %8s %9s %9s %10s\n' operation MiB seconds MB/s "x copy"
printf '%s\n' "${rows[@]}"
echo
echo "server peak RSS (VmHWM), a fresh process per round:"
printf '%s\n' "${rss[@]}"
