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
# With REGISTRY_V3 naming CNCF distribution's `registry` binary (v3; ../shared/conformance's
# build makes one), the same push and pull go through it too, on its filesystem driver in the
# same directory ("dist push", "dist pull"), for comparison.
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

bench_name=bench/blob.sh
# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"

# One round: a fresh server, a random file of $1 MiB, copy/push/pull, peak RSS.
round() {
  local mib="$1" file="$work/blob-$1" digest t0 t1
  echo "bench/blob.sh: round of $mib MiB" >&2
  head -c "$((mib * 1048576))" /dev/urandom >"$file"
  digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
  start_server "$mib" --storage fs --root "$work/root-$mib"
  local rss_idle
  rss_idle="$(peak_rss_mib)"

  t0="$(now)"
  dd if="$file" of="$work/copy-$mib" bs=8M conv=fsync status=none
  t1="$(now)"
  local copy_s
  copy_s="$(elapsed "$t0" "$t1")"
  rm -f "$work/copy-$mib"

  push_and_pull "$file" "$digest"

  row copy "$mib" "$copy_s" "$copy_s"
  row upload "$mib" "$upload_s" "$copy_s"
  row commit "$mib" "$commit_s" "$copy_s"
  row push "$mib" "$push_s" "$copy_s"
  row pull "$mib" "$pull_s" "$copy_s"
  rss+=("$(printf '%6s MiB blob: peak RSS %s MiB (%s MiB idle)' "$mib" "$(peak_rss_mib)" "$rss_idle")")
  stop_server
  rm -rf "$work/root-$mib"
  if [ -n "${REGISTRY_V3:-}" ]; then
    distribution "$file" "$digest"
    row "dist push" "$mib" "$push_s" "$copy_s"
    row "dist pull" "$mib" "$pull_s" "$copy_s"
  fi
  rm -f "$file"
}

# The same push and pull through distribution (REGISTRY_V3) on its filesystem driver.
distribution() {
  local port config="$work/registry.yml" log="$work/registry.log"
  port="$(free_port)"
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$work/dist-root" "$port" >"$config"
  "$REGISTRY_V3" serve "$config" 2>"$log" &
  server_pid=$!
  base="http://127.0.0.1:$port"
  wait_ok "$base/v2/"
  push_and_pull "$1" "$2"
  stop_server
  rm -rf "$work/dist-root"
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
