# Shared by the benchmark scripts (sourced): temp dir and cleanup, timing, the server process,
# peak RSS, and the result table; and scripts/s3-servers (free_port, and s3_servers_start for the
# benchmarks over S3). Expects repo, bin, bench_parent and bench_name to be set.

# shellcheck source=scripts/s3-servers
source "$repo/scripts/s3-servers"

mkdir -p "$bench_parent"
work="$(mktemp -d "$bench_parent/berth-bench.XXXXXX")"
server_pid=""
creds=()

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
# Waits (up to 10 s) until $1 answers 200.
wait_ok() {
  local i
  for i in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
    sleep 0.1
  done
  echo "$bench_name: $1 does not answer" >&2
  exit 1
}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# Starts a server with the storage flags that follow the round name, on $listen (default: a free
# loopback port); sets server_pid and base.
start_server() {
  local log="$work/berth-$1.log" addr="" i
  shift
  "$bin" serve --listen "${listen:-127.0.0.1:0}" --log-format text "$@" 2>"$log" &
  server_pid=$!
  for i in $(seq 1 300); do
    addr="$(grep -o 'berth listening addr=[0-9.:]*' "$log" | head -1 | cut -d= -f2 || true)"
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; echo "$bench_name: berth exited" >&2; exit 1; }
    sleep 0.05
  done
  [ -n "$addr" ] || { cat "$log" >&2; echo "$bench_name: berth did not start" >&2; exit 1; }
  base="http://$addr"
  for i in $(seq 1 100); do
    case "$(curl -s -o /dev/null -w '%{http_code}' "$base/v2/")" in 200 | 401) return 0 ;; esac
    sleep 0.05
  done
  echo "$bench_name: $base/v2/ does not answer" >&2
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


# Pushes $1 (digest $2) as one streamed PATCH and a PUT, then pulls it back (following a
# redirect to storage, if any) and checks it; sets upload_s, commit_s, push_s and pull_s. The POST
# and the pull send the curl arguments in the array creds (credentials), if set; the PATCH and
# PUT go to the Location of the answer before them, as it is, as clients send them (to an upload
# host, too).
push_and_pull() {
  local file="$1" digest="$2" headers="$work/headers" status location loc_path t0 t1 t2 t3
  t0="$(now)"
  status="$(curl -sS "${creds[@]}" -o /dev/null -D "$headers" -w '%{http_code}' -X POST "$base/v2/bench/blob/blobs/uploads/")"
  [ "$status" = 202 ] || { echo "$bench_name: POST answered $status" >&2; exit 1; }
  location="$(awk 'tolower($1) == "location:" { print $2 }' "$headers" | tr -d '\r')"
  case "$location" in http*) loc_path="$location" ;; *) loc_path="$base$location" ;; esac
  # -T streams the file (no Content-Range); "Expect:" skips curl's 100-continue wait.
  status="$(curl -sS -o /dev/null -D "$headers" -w '%{http_code}' -X PATCH -H 'Expect:' \
    -H 'Content-Type: application/octet-stream' -T "$file" "$loc_path")"
  [ "$status" = 202 ] || { echo "$bench_name: PATCH answered $status" >&2; exit 1; }
  t1="$(now)"
  location="$(awk 'tolower($1) == "location:" { print $2 }' "$headers" | tr -d '\r')"
  case "$location" in http*) loc_path="$location" ;; *) loc_path="$base$location" ;; esac
  case "$loc_path" in *\?*) loc_path="$loc_path&digest=$digest" ;; *) loc_path="$loc_path?digest=$digest" ;; esac
  status="$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "$loc_path")"
  [ "$status" = 201 ] || { echo "$bench_name: PUT answered $status" >&2; exit 1; }
  t2="$(now)"
  curl -sSfL "${creds[@]}" -o "$work/pulled" "$base/v2/bench/blob/blobs/$digest"
  t3="$(now)"
  [ "sha256:$(sha256sum "$work/pulled" | cut -d' ' -f1)" = "$digest" ] || {
    echo "$bench_name: the pulled blob differs from the pushed file" >&2
    exit 1
  }
  rm -f "$work/pulled"
  upload_s="$(elapsed "$t0" "$t1")"
  commit_s="$(elapsed "$t1" "$t2")"
  push_s="$(elapsed "$t0" "$t2")"
  pull_s="$(elapsed "$t2" "$t3")"
}
