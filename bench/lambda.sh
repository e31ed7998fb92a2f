#!/usr/bin/env bash
# The Lambda function's size and cold start: the `bootstrap` built as `sam build` builds it
# (the Makefile's `lambda` target, for this machine's architecture) and, RUNS times,
# the time from starting it to its first answer: a `GET /v2/` is already waiting in
# cargo-lambda's emulator (`cargo lambda watch --only-lambda-apis`, the runtime API) when the
# process starts, so the time covers the function's whole init (settings, AWS config, opening
# and checking the bucket) and the first invocation. Over the local S3 server
# (BERTH_TEST_S3_ENDPOINT/BERTH_TEST_S3_BUCKET if set, else scripts/s3-servers starts s3s-fs).
#
# Needs cargo-lambda (BERTH_CARGO_LAMBDA, or on PATH; scripts/test installs it from PyPI), make
# and curl. Builds the bootstrap when missing (BOOTSTRAP picks another one).
# Usage: bench/lambda.sh      RUNS=3 BOOTSTRAP=target/debug/bootstrap bench/lambda.sh (the test suite)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-20}"
bootstrap="${BOOTSTRAP:-$repo/target/sam/bootstrap/bootstrap}"
cargo_lambda="${BERTH_CARGO_LAMBDA:-cargo-lambda}"
bin="$bootstrap"
bench_parent="${BENCH_DIR:-$repo/target}"
bench_name=bench/lambda.sh

command -v "$cargo_lambda" >/dev/null || { echo "$bench_name: needs cargo-lambda (pip install cargo-lambda)" >&2; exit 1; }
if [ ! -x "$bootstrap" ]; then
  echo "$bench_name: building the bootstrap (make lambda ARCH=)" >&2
  # `cargo lambda` finds cargo-lambda on PATH.
  PATH="$(dirname "$(command -v "$cargo_lambda")"):$PATH" make -C "$repo" lambda ARCH=
fi
# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"
s3_servers_start

port="$(free_port)"
(cd "$repo" && exec "$cargo_lambda" lambda watch --only-lambda-apis --disable-cors -A 127.0.0.1 -P "$port") \
  >"$work/emulator.log" 2>&1 &
# The emulator is this run's server: common.sh's cleanup (run after the S3 servers' stop, see
# scripts/s3-servers) stops it.
server_pid=$!
# Listening is enough (any HTTP request would wait for a function to answer it).
for _ in $(seq 1 600); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

# One cold start: the request first, then the function; milliseconds from its start to the answer.
cold_start() {
  local answer="$work/answer" curl_pid start end status
  curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" >"$answer" &
  curl_pid=$!
  sleep 0.3
  start="$(date +%s%N)"
  # The environment Lambda gives a function (region, credentials from the S3 server's), and the
  # template's settings.
  AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$port/.rt" AWS_LAMBDA_FUNCTION_NAME=_ AWS_LAMBDA_FUNCTION_VERSION=1 \
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512 AWS_REGION="${AWS_REGION:-us-east-1}" BERTH_LOG_FORMAT=json BERTH_AUTH=none BERTH_STORAGE=s3 BERTH_S3_BUCKET="$BERTH_TEST_S3_BUCKET" \
    BERTH_S3_ENDPOINT="$BERTH_TEST_S3_ENDPOINT" BERTH_S3_PATH_STYLE=true BERTH_S3_PREFIX="bench-lambda" \
    "$bootstrap" >/dev/null 2>"$work/function.log" &
  local function=$!
  wait "$curl_pid" || true
  end="$(date +%s%N)"
  kill "$function" 2>/dev/null || true
  wait "$function" 2>/dev/null || true
  status="$(cat "$answer")"
  if [ "$status" != 200 ]; then
    echo "$bench_name: the function answered GET /v2/ with $status; its log:" >&2
    cat "$work/function.log" >&2
    exit 1
  fi
  echo $(((end - start) / 1000000))
}

times=()
for _ in $(seq 1 "$runs"); do
  times+=("$(cold_start)")
done
sorted="$(printf '%s\n' "${times[@]}" | sort -n)"
median="$(sed -n "$(((runs + 1) / 2))p" <<<"$sorted")"
size="$(stat -c %s "$bootstrap")"

echo
echo "berth Lambda benchmark ($(nproc) cores, ${BERTH_TEST_S3_SERVER:-S3} at $BERTH_TEST_S3_ENDPOINT)"
printf '%-38s %s\n' "bootstrap" "$bootstrap"
printf '%-38s %s bytes (%s MB)\n' "size" "$size" "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }')"
printf '%-38s %s ms (min %s, max %s, %s runs)\n' "start to first answer, median" "$median" \
  "$(head -1 <<<"$sorted")" "$(tail -1 <<<"$sorted")" "$runs"
