#!/usr/bin/env bash
# Gateway throughput with the audit log on versus off (the benchmark-only
# switch), both in front of the same standalone mock, in interleaved rounds.
#
#   bench/audit.sh                 # builds target/release/portcullis first
#
# Reports the median peak rate (wrk -t2 -c64) of each and the ratio; the
# target is on/off >= 0.90. Also reports the audit entries committed during
# the "on" runs, so the figure is known to include the log's writes.
#
# Knobs: BENCH_DURATION_SECONDS [10], BENCH_ROUNDS [3], BENCH_SKIP_BUILD [0],
# PORTCULLIS_BIN [target/release/portcullis].
set -euo pipefail

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$bench_dir/.." && pwd)"
run_dir="$bench_dir/out/audit-$(date -u +%Y%m%dT%H%M%SZ)"
duration="${BENCH_DURATION_SECONDS:-10}"
rounds="${BENCH_ROUNDS:-3}"
bin="${PORTCULLIS_BIN:-${CARGO_TARGET_DIR:-$repo_root/target}/release/portcullis}"
mkdir -p "$run_dir"

for tool in wrk curl jq python3 setsid; do
  command -v "$tool" >/dev/null || { echo "error: \`$tool\` is required" >&2; exit 1; }
done
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  (cd "$repo_root" && cargo build --release --locked -p portcullis) >"$run_dir/build.log" 2>&1
fi

groups=()
cleanup() { for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done; }
trap cleanup EXIT

read -r mock_port on_port on_admin off_port off_admin <<<"$(python3 -c '
import socket
s=[socket.socket() for _ in range(5)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')"

setsid "$bin" mock --listen "127.0.0.1:$mock_port" --token-interval-ms 0 >"$run_dir/mock.log" 2>&1 </dev/null &
groups+=($!)

cat >"$run_dir/portcullis.toml" <<TOML
[log]
level = "warn"

[[models]]
name = "bench"
provider = "openai"
base_url = "http://127.0.0.1:$mock_port/v1"
upstream_model = "bench"
state = "released"
family = "bench"
tags = []
TOML

start_gateway() {
  local name=$1 port=$2 admin=$3
  shift 3
  setsid env "$@" "$bin" serve --demo --data "$run_dir/$name" --config "$run_dir/portcullis.toml" \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" >"$run_dir/$name.log" 2>&1 </dev/null &
  groups+=($!)
  for _ in $(seq 1 600); do [[ -s "$run_dir/$name/demo-keys.json" ]] && return 0; sleep 0.1; done
  echo "error: $name did not start; see $run_dir/$name.log" >&2
  exit 1
}
start_gateway on "$on_port" "$on_admin"
start_gateway off "$off_port" "$off_admin" PORTCULLIS_BENCHMARK_ONLY_AUDIT_OFF=1 PORTCULLIS__AUDIT__ENABLED=false

cat >"$run_dir/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"bench","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
LUA

peak() {
  local name=$1 port=$2
  local key
  key="$(jq -r '.keys.alice' "$run_dir/$name/demo-keys.json")"
  wrk -t2 -c64 -d"${duration}s" -s "$run_dir/post.lua" -H "Authorization: Bearer $key" \
    "http://127.0.0.1:$port/v1/chat/completions" >"$run_dir/wrk-$name-$3.txt"
  grep -q "Non-2xx" "$run_dir/wrk-$name-$3.txt" && { echo "error: non-2xx answers; see $run_dir/wrk-$name-$3.txt" >&2; exit 1; }
  awk '/Requests\/sec/ { print $2 }' "$run_dir/wrk-$name-$3.txt"
}

on_rates=(); off_rates=()
for round in $(seq 1 "$rounds"); do
  on_rates+=("$(peak on "$on_port" "$round")")
  off_rates+=("$(peak off "$off_port" "$round")")
  echo "round $round: audit on ${on_rates[-1]} req/s, audit off ${off_rates[-1]} req/s" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR]=$1 } END { print a[int((NR+1)/2)] }'; }
on="$(median "${on_rates[@]}")"; off="$(median "${off_rates[@]}")"
entries="$(curl -fsS "http://127.0.0.1:$on_admin/metrics" | awk '/^portcullis_requests_total/ { s += $2 } END { print s+0 }')"
echo "| audit | peak req/s (median of $rounds) |"
echo "|---|---|"
echo "| on | $on |"
echo "| off | $off |"
awk -v a="$on" -v b="$off" 'BEGIN { printf "\non/off = %.2f (target >= 0.90); requests recorded by the audited gateway: '"$entries"'\n", a / b }'
