#!/usr/bin/env bash
# Measures what Portcullis adds to a chat completion, against the same static
# upstream reached directly, through a bare nginx reverse proxy and through
# LiteLLM, on one machine in one run.
#
# Targets, all in front of one nginx static mock:
#   direct       the mock itself
#   nginx-proxy  nginx proxy_pass with a keepalive upstream
#   portcullis   target/release/portcullis serve --demo, config model `bench`
#                (provider openai), called as alice
#   litellm      LiteLLM proxy 1.106.12 with 2 workers (installed once into
#                bench/out/litellm-venv; reported as not measured if that fails)
#
# For each target and for non-streaming and streaming requests it measures
# the peak rate (wrk -t2 -c64) and the p50/p99 latency at half of Portcullis'
# median peak, in interleaved rounds, and prints a Markdown report that is
# also written to bench/out/overhead-<timestamp>.md. Any non-2xx answer or
# socket error makes the script exit non-zero after the report is written.
#
# Environment knobs (defaults in brackets):
#   BENCH_DURATION_SECONDS [10]   length of every measured wrk run
#   BENCH_WARMUP_SECONDS   [3]    length of the unreported warm-up run
#   BENCH_ROUNDS           [3]    interleaved rounds; medians are reported
#   BENCH_SKIP_BUILD       [0]    1 skips `cargo build --release -p portcullis`
#   BENCH_SKIP_LITELLM     [0]    1 reports LiteLLM as not measured
#   PORTCULLIS_BIN         [$CARGO_TARGET_DIR or target, then /release/portcullis]
set -euo pipefail

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$bench_dir/.." && pwd)"
out_dir="$bench_dir/out"
timestamp="$(date -u +%Y%m%dT%H%M%SZ)"
run_dir="$out_dir/run-$timestamp"
report_file="$out_dir/overhead-$timestamp.md"

duration_seconds="${BENCH_DURATION_SECONDS:-10}"
warmup_seconds="${BENCH_WARMUP_SECONDS:-3}"
rounds="${BENCH_ROUNDS:-3}"
wrk_threads=2
wrk_connections=64
portcullis_bin="${PORTCULLIS_BIN:-${CARGO_TARGET_DIR:-$repo_root/target}/release/portcullis}"
litellm_version="1.106.12"
litellm_venv="$out_dir/litellm-venv"
litellm_workers=2
nginx_worker_processes=1

targets=(direct nginx-proxy portcullis litellm)
modes=(non-streaming streaming)

mkdir -p "$run_dir"

log() {
  printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

die() {
  log "error: $*"
  exit 1
}

for tool in nginx wrk curl jq python3 awk setsid; do
  command -v "$tool" >/dev/null || die "\`$tool\` is required but not on PATH"
done

# Every server is started with setsid so that it leads its own process group;
# cleanup then ends exactly those groups (nginx workers, LiteLLM's uvicorn
# workers) and nothing else.
started_group_ids=()

cleanup() {
  local group_id
  for group_id in "${started_group_ids[@]}"; do
    kill -TERM -- "-$group_id" 2>/dev/null || true
  done
  for group_id in "${started_group_ids[@]}"; do
    for _ in $(seq 1 50); do
      kill -0 -- "-$group_id" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$group_id" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_in_own_group LOG_FILE COMMAND...: sets started_group_id. It is not
# called in a command substitution, which would run it in a subshell and lose
# the group from the cleanup list.
start_in_own_group() {
  local log_file=$1
  shift
  setsid "$@" >"$log_file" 2>&1 </dev/null &
  started_group_id=$!
  started_group_ids+=("$started_group_id")
}

free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
sockets = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
print(" ".join(str(s.getsockname()[1]) for s in sockets))
PY
}

wait_for_http() {
  local url=$1 timeout_seconds=$2 pid=$3
  local deadline=$((SECONDS + timeout_seconds))
  while ((SECONDS < deadline)); do
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}

# The summed user+system CPU ticks of every process in a process group, so a
# run can report how much of the 2 cores the server itself used.
group_cpu_ticks() {
  local group_id=$1 total=0 pid fields
  for pid in $(pgrep -g "$group_id" 2>/dev/null || true); do
    fields="$(cut -d')' -f2- "/proc/$pid/stat" 2>/dev/null)" || continue
    # After the command name: state is field 1, utime 12, stime 13.
    total=$((total + $(awk '{print $12 + $13}' <<<"$fields")))
  done
  echo "$total"
}

# children_cpu_seconds VARIABLE: stores the CPU seconds that waited-for
# children of this shell have used, from the `times` builtin, so the load
# generator's own CPU use can be reported. `times` must run in this shell, not
# in a subshell, whose children's times start at zero.
times_file="$run_dir/times.txt"
children_cpu_seconds() {
  times >"$times_file"
  printf -v "$1" '%s' "$(awk 'NR == 2 {
    total = 0
    for (i = 1; i <= 2; i++) {
      split($i, parts, "m"); sub("s", "", parts[2]); total += parts[1] * 60 + parts[2]
    }
    printf "%.3f\n", total
  }' "$times_file")"
}

clock_ticks_per_second="$(getconf CLK_TCK)"

# ---------------------------------------------------------------------------
# The Portcullis build.

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "building portcullis in release mode (a no-op when it is up to date)"
  (cd "$repo_root" && cargo build --release --locked -p portcullis) >"$run_dir/cargo-build.log" 2>&1 \
    || die "release build failed; see $run_dir/cargo-build.log"
fi
[[ -x "$portcullis_bin" ]] || die "no portcullis binary at \`$portcullis_bin\`"

# ---------------------------------------------------------------------------
# The nginx static mock and the nginx reverse proxy, one process.

read -r mock_port proxy_port portcullis_port portcullis_admin_port litellm_port <<<"$(free_ports 5)"

completion_json='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"mock","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the static mock."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18}}'
chunk_prefix='{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"mock","choices":[{"index":0,'
sse_body=""
for delta in '"delta":{"role":"assistant","content":""},"finish_reason":null' \
  '"delta":{"content":"Hello"},"finish_reason":null' \
  '"delta":{"content":" from the"},"finish_reason":null' \
  '"delta":{"content":" static mock."},"finish_reason":null' \
  '"delta":{},"finish_reason":"stop"'; do
  sse_body+="data: ${chunk_prefix}${delta}}]}\\n\\n"
done
sse_body+='data: [DONE]\n\n'

mkdir -p "$run_dir/nginx"
cat >"$run_dir/nginx/nginx.conf" <<EOF
# One worker process: the upstream then takes at most one of the two cores,
# whichever target sits in front of it.
worker_processes $nginx_worker_processes;
daemon off;
pid $run_dir/nginx/nginx.pid;
error_log $run_dir/nginx/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    client_body_temp_path $run_dir/nginx/client_body;
    proxy_temp_path $run_dir/nginx/proxy;
    fastcgi_temp_path $run_dir/nginx/fastcgi;
    uwsgi_temp_path $run_dir/nginx/uwsgi;
    scgi_temp_path $run_dir/nginx/scgi;
    # Keep client connections open for the whole run, as wrk expects.
    keepalive_requests 10000000;
    keepalive_timeout 75s;

    server {
        listen 127.0.0.1:$mock_port;

        location = /v1/chat/completions {
            default_type application/json;
            return 200 '$completion_json';
        }

        location = /stream/v1/chat/completions {
            default_type text/event-stream;
            return 200 '$sse_body';
        }
    }

    upstream static_mock {
        server 127.0.0.1:$mock_port;
        keepalive 64;
        keepalive_requests 10000000;
    }

    server {
        listen 127.0.0.1:$proxy_port;

        location / {
            proxy_pass http://static_mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF

log "starting nginx (mock on $mock_port, reverse proxy on $proxy_port)"
start_in_own_group "$run_dir/nginx/stdout.log" \
  nginx -e "$run_dir/nginx/error.log" -p "$run_dir/nginx" -c "$run_dir/nginx/nginx.conf"
nginx_group_id=$started_group_id
# nginx answers 405 to GET on a location that only returns 200 to POST, so
# readiness is a POST.
for _ in $(seq 1 50); do
  if curl -fsS -o /dev/null -X POST -d '{}' "http://127.0.0.1:$proxy_port/v1/chat/completions" 2>/dev/null; then
    break
  fi
  kill -0 "$nginx_group_id" 2>/dev/null || die "nginx exited; see $run_dir/nginx/error.log"
  sleep 0.1
done

# ---------------------------------------------------------------------------
# Portcullis with a config-declared model on the nginx mock.

cat >"$run_dir/portcullis.toml" <<EOF
[[models]]
name = "bench"
provider = "openai"
base_url = "http://127.0.0.1:$mock_port/v1"
upstream_model = "mock"
state = "released"
family = "bench"
tags = []

[[models]]
name = "bench-stream"
provider = "openai"
base_url = "http://127.0.0.1:$mock_port/stream/v1"
upstream_model = "mock"
state = "released"
family = "bench"
tags = []
EOF

log "starting portcullis on $portcullis_port (admin $portcullis_admin_port)"
# RUST_LOG would replace the configured log filter; the build is measured with
# its own defaults.
start_in_own_group "$run_dir/portcullis.log" \
  env -u RUST_LOG "$portcullis_bin" serve --demo --data "$run_dir/portcullis-data" \
  --config "$run_dir/portcullis.toml" \
  --listen "127.0.0.1:$portcullis_port" --admin-listen "127.0.0.1:$portcullis_admin_port"
portcullis_group_id=$started_group_id
demo_keys="$run_dir/portcullis-data/demo-keys.json"
deadline=$((SECONDS + 60))
until [[ -s "$demo_keys" ]] && jq -e '.keys.alice' "$demo_keys" >/dev/null 2>&1; do
  kill -0 "$portcullis_group_id" 2>/dev/null || die "portcullis exited; see $run_dir/portcullis.log"
  ((SECONDS < deadline)) || die "portcullis wrote no demo-keys.json within 60 s"
  sleep 0.2
done
alice_key="$(jq -r '.keys.alice' "$demo_keys")"
portcullis_listen="$(jq -r '.listen' "$demo_keys")"

# ---------------------------------------------------------------------------
# LiteLLM, installed once and reused.

litellm_status="measured"
litellm_master_key="sk-bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

installed_litellm_version() {
  "$litellm_venv/bin/python" -c \
    'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || true
}

if [[ "${BENCH_SKIP_LITELLM:-0}" == 1 ]]; then
  litellm_status="not measured: skipped with BENCH_SKIP_LITELLM=1"
elif [[ "$(installed_litellm_version)" != "$litellm_version" ]]; then
  log "installing litellm[proxy]==$litellm_version into $litellm_venv (slow, once)"
  if ! {
    python3 -m venv "$litellm_venv" &&
      "$litellm_venv/bin/pip" install --quiet "litellm[proxy]==$litellm_version"
  } >"$out_dir/litellm-install.log" 2>&1; then
    litellm_status="not measured: installation failed: $(tail -n 1 "$out_dir/litellm-install.log")"
  fi
fi

if [[ "$litellm_status" == measured ]]; then
  cat >"$run_dir/litellm.yaml" <<EOF
model_list:
  - model_name: bench
    litellm_params:
      model: openai/mock
      api_base: http://127.0.0.1:$mock_port/v1
      api_key: not-used-by-the-mock
  - model_name: bench-stream
    litellm_params:
      model: openai/mock
      api_base: http://127.0.0.1:$mock_port/stream/v1
      api_key: not-used-by-the-mock

general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
EOF
  log "starting litellm on $litellm_port with $litellm_workers workers"
  # The LITELLM_LOCAL_* flags and DISABLE_MODELS_FETCH keep it from fetching
  # remote files at start; DATABASE_URL stays unset. uvicorn's supervisor
  # kills a worker that does not answer its health check within 5 s by
  # default, and importing LiteLLM takes longer than that on a busy 2-core
  # machine, so without a longer timeout the workers are restarted forever.
  start_in_own_group "$run_dir/litellm.log" \
    env -u DATABASE_URL \
    LITELLM_MASTER_KEY="$litellm_master_key" \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS=True \
    LITELLM_LOCAL_POLICY_TEMPLATES=True \
    LITELLM_LOCAL_BLOG_POSTS=True \
    LITELLM_LOCAL_AUTOROUTER_PRESETS=True \
    DISABLE_MODELS_FETCH=True \
    "$litellm_venv/bin/litellm" --config "$run_dir/litellm.yaml" \
    --host 127.0.0.1 --port "$litellm_port" --num_workers "$litellm_workers" \
    --timeout_worker_healthcheck 120
  litellm_group_id=$started_group_id
  if ! wait_for_http "http://127.0.0.1:$litellm_port/health/liveliness" 300 "$litellm_group_id"; then
    litellm_status="not measured: the proxy did not become live within 300 s: $(tail -n 1 "$run_dir/litellm.log")"
  fi
fi
if [[ "$litellm_status" != measured ]]; then
  log "litellm $litellm_status"
  targets=(direct nginx-proxy portcullis)
fi

# ---------------------------------------------------------------------------
# Where each target is reached.

target_url() {
  local target=$1 mode=$2 stream_prefix=""
  [[ "$mode" == streaming ]] && stream_prefix="/stream"
  case "$target" in
    direct) echo "http://127.0.0.1:$mock_port$stream_prefix/v1/chat/completions" ;;
    nginx-proxy) echo "http://127.0.0.1:$proxy_port$stream_prefix/v1/chat/completions" ;;
    portcullis) echo "http://$portcullis_listen/v1/chat/completions" ;;
    litellm) echo "http://127.0.0.1:$litellm_port/v1/chat/completions" ;;
  esac
}

target_model() {
  local target=$1 mode=$2
  case "$target" in
    direct | nginx-proxy) echo mock ;;
    *) [[ "$mode" == streaming ]] && echo bench-stream || echo bench ;;
  esac
}

target_authorization() {
  case "$1" in
    portcullis) echo "Bearer $alice_key" ;;
    litellm) echo "Bearer $litellm_master_key" ;;
    *) echo "" ;;
  esac
}

target_group_id() {
  case "$1" in
    direct | nginx-proxy) echo "$nginx_group_id" ;;
    portcullis) echo "$portcullis_group_id" ;;
    litellm) echo "$litellm_group_id" ;;
  esac
}

request_body() {
  local model=$1 mode=$2 stream=false
  [[ "$mode" == streaming ]] && stream=true
  printf '{"model":"%s","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16,"stream":%s}' \
    "$model" "$stream"
}

# One request per target and mode before any load, so that a broken setup
# fails in seconds with the answer in hand rather than after the whole run.
for target in "${targets[@]}"; do
  for mode in "${modes[@]}"; do
    authorization="$(target_authorization "$target")"
    curl_args=(-sS -o "$run_dir/smoke-$target-$mode.out" -w '%{http_code}' --max-time 30
      -H 'Content-Type: application/json'
      --data "$(request_body "$(target_model "$target" "$mode")" "$mode")")
    [[ -n "$authorization" ]] && curl_args+=(-H "Authorization: $authorization")
    status="$(curl "${curl_args[@]}" "$(target_url "$target" "$mode")" || echo 000)"
    if [[ "$status" != 200 ]]; then
      answer="$(head -c 300 "$run_dir/smoke-$target-$mode.out" 2>/dev/null || true)"
      if [[ "$target" == litellm ]]; then
        litellm_status="not measured: a $mode request answered $status: $answer"
        log "litellm $litellm_status"
        targets=(direct nginx-proxy portcullis)
        break 2
      fi
      die "$target ($mode) answered $status to a single request: $answer"
    fi
    if [[ "$mode" == streaming ]] && ! grep -q 'data: \[DONE\]' "$run_dir/smoke-$target-$mode.out"; then
      die "$target ($mode) did not relay the SSE stream to its end"
    fi
  done
done

# ---------------------------------------------------------------------------
# Measurement.

# Results are kept one line per run in a TSV file:
# phase round mode target offered_rps achieved_rps p50_us p99_us non2xx socket_errors server_cpu_pct wrk_cpu_pct load1 server_cpu_us_per_request
runs_file="$run_dir/runs.tsv"
: >"$runs_file"
failures=0
first_failure_note=""

# run_wrk PHASE ROUND MODE TARGET RATE SECONDS: one wrk run, appended to
# runs.tsv unless PHASE is warmup.
run_wrk() {
  local phase=$1 round=$2 mode=$3 target=$4 rate=$5 seconds=$6
  local wrk_log="$run_dir/wrk-$phase-$round-$mode-$target.log"
  local stream=false group_id cpu_ticks_before cpu_ticks_after wrk_cpu_before wrk_cpu_after load1
  [[ "$mode" == streaming ]] && stream=true
  group_id="$(target_group_id "$target")"
  load1="$(cut -d' ' -f1 /proc/loadavg)"
  cpu_ticks_before="$(group_cpu_ticks "$group_id")"
  children_cpu_seconds wrk_cpu_before
  BENCH_MODEL="$(target_model "$target" "$mode")" \
    BENCH_STREAM="$stream" \
    BENCH_AUTHORIZATION="$(target_authorization "$target")" \
    BENCH_RATE="$rate" \
    BENCH_THREADS="$wrk_threads" \
    wrk -t"$wrk_threads" -c"$wrk_connections" -d"${seconds}s" --timeout 10s \
    -s "$bench_dir/overhead.lua" "$(target_url "$target" "$mode")" >"$wrk_log" 2>&1 || true
  children_cpu_seconds wrk_cpu_after
  cpu_ticks_after="$(group_cpu_ticks "$group_id")"

  local result
  result="$(grep '^BENCH_RESULT' "$wrk_log" || true)"
  if [[ -z "$result" ]]; then
    log "wrk printed no result for $target ($mode, $phase); see $wrk_log"
    failures=$((failures + 1))
    [[ -n "$first_failure_note" ]] || first_failure_note="wrk printed no result for $target ($mode)"
    return 0
  fi
  local requests rps p50_us p99_us non2xx socket_errors
  requests="$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result")"
  rps="$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$result")"
  p50_us="$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$result")"
  p99_us="$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$result")"
  non2xx="$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$result")"
  socket_errors="$(sed -E 's/.*socket_errors=([0-9]+).*/\1/' <<<"$result")"
  if ((non2xx > 0 || socket_errors > 0 || requests == 0)); then
    failures=$((failures + 1))
    local note
    note="$target ($mode, $phase round $round): $non2xx non-2xx, $socket_errors socket errors, $requests requests"
    note+=" $(grep '^BENCH_FIRST_FAILURE' "$wrk_log" | cut -c21- || true)"
    log "failure: $note"
    [[ -n "$first_failure_note" ]] || first_failure_note="$note"
  fi
  local server_cpu_pct wrk_cpu_pct server_cpu_us_per_request
  server_cpu_pct="$(awk -v d="$((cpu_ticks_after - cpu_ticks_before))" -v hz="$clock_ticks_per_second" -v s="$seconds" \
    'BEGIN { printf "%.0f", 100 * d / hz / s }')"
  # CPU time per request is less sensitive than the rate to how much of the
  # machine other work leaves to the benchmark.
  server_cpu_us_per_request="$(awk -v d="$((cpu_ticks_after - cpu_ticks_before))" -v hz="$clock_ticks_per_second" -v n="$requests" \
    'BEGIN { if (n > 0) printf "%.0f", 1e6 * d / hz / n }')"
  wrk_cpu_pct="$(awk -v a="$wrk_cpu_before" -v b="$wrk_cpu_after" -v s="$seconds" \
    'BEGIN { printf "%.0f", 100 * (b - a) / s }')"
  log "$phase round $round $mode $target: offered ${rate:-0} rps, achieved $rps rps, p50 ${p50_us} us, p99 ${p99_us} us, server cpu ${server_cpu_pct}%, wrk cpu ${wrk_cpu_pct}%"
  if [[ "$phase" != warmup ]]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
      "$phase" "$round" "$mode" "$target" "$rate" "$rps" "$p50_us" "$p99_us" \
      "$non2xx" "$socket_errors" "$server_cpu_pct" "$wrk_cpu_pct" "$load1" "$server_cpu_us_per_request" >>"$runs_file"
  fi
}

# median PHASE MODE TARGET COLUMN: the median of one runs.tsv column.
median() {
  local phase=$1 mode=$2 target=$3 column=$4
  awk -F'\t' -v p="$phase" -v m="$mode" -v t="$target" -v c="$column" \
    '$1 == p && $3 == m && $4 == t { print $c }' "$runs_file" | sort -g |
    awk '{ values[NR] = $1 } END {
      if (NR == 0) { print ""; exit }
      if (NR % 2) print values[(NR + 1) / 2]; else printf "%.1f\n", (values[NR / 2] + values[NR / 2 + 1]) / 2
    }'
}

load_at_start="$(cat /proc/loadavg)"
started_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

log "warm-up: ${warmup_seconds} s per target and mode"
for mode in "${modes[@]}"; do
  for target in "${targets[@]}"; do
    run_wrk warmup 0 "$mode" "$target" 0 "$warmup_seconds"
  done
done

log "peak rate: $rounds interleaved rounds of ${duration_seconds} s runs"
for round in $(seq 1 "$rounds"); do
  for mode in "${modes[@]}"; do
    for target in "${targets[@]}"; do
      run_wrk peak "$round" "$mode" "$target" 0 "$duration_seconds"
    done
  done
done

declare -A fixed_rate
for mode in "${modes[@]}"; do
  portcullis_peak="$(median peak "$mode" portcullis 6)"
  half_peak="$(awk -v r="${portcullis_peak:-0}" 'BEGIN { printf "%d", r / 2 }')"
  ((half_peak > 0)) || die "portcullis reached no measurable peak rate for $mode requests"
  fixed_rate[$mode]=$half_peak
done

log "latency at half of Portcullis' peak: ${fixed_rate[non-streaming]} rps non-streaming, ${fixed_rate[streaming]} rps streaming"
for round in $(seq 1 "$rounds"); do
  for mode in "${modes[@]}"; do
    for target in "${targets[@]}"; do
      run_wrk fixed "$round" "$mode" "$target" "${fixed_rate[$mode]}" "$duration_seconds"
    done
  done
done

finished_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
load_at_end="$(cat /proc/loadavg)"

# ---------------------------------------------------------------------------
# The report.

ms() { awk -v us="$1" 'BEGIN { if (us == "") print "–"; else printf "%.2f", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print ""; else printf "%.2f", a / b }'; }
# judged VALUE UNIT OPERATOR LIMIT: the value with its unit and whether it
# meets the target, or "not measured" when there is no value.
judged() {
  awk -v v="$1" -v unit="$2" -v op="$3" -v l="$4" 'BEGIN {
    if (v == "") { print "not measured"; exit }
    ok = (op == ">=") ? (v >= l) : (v < l)
    printf "%s%s (%s)\n", v, unit, ok ? "met" : "**missed**"
  }'
}

portcullis_commit="$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
changed_sources="$(git -C "$repo_root" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null |
  awk '{ print $NF }' | paste -sd' ' -)" || changed_sources=""
if [[ -n "$changed_sources" ]]; then
  portcullis_commit+=" with uncommitted changes to $changed_sources"
fi
portcullis_crates="$( (cd "$repo_root" && cargo tree --offline -p portcullis -e normal --prefix none) 2>/dev/null |
  awk '/^portcullis/ { print $1 }' | sort -u | paste -sd' ' -)" || portcullis_crates="unknown"
litellm_line="not measured"
[[ "$litellm_status" == measured ]] && litellm_line="LiteLLM $litellm_version proxy, $litellm_workers workers, no database, default settings otherwise"

{
  echo "# Portcullis overhead benchmark, $started_at"
  echo
  echo "Command: \`bench/overhead.sh\` with BENCH_DURATION_SECONDS=$duration_seconds BENCH_ROUNDS=$rounds BENCH_WARMUP_SECONDS=$warmup_seconds."
  echo "Load: wrk -t$wrk_threads -c$wrk_connections, ${duration_seconds} s per run, $rounds interleaved rounds (direct, nginx-proxy, portcullis, litellm, then again); every figure is the median of the rounds."
  echo "Peak = wrk as fast as the target answers. Latency = a paced wrk run at half of Portcullis' median peak for the same kind of request; the achieved rate is shown beside it, and a target that cannot keep up shows a lower achieved rate."
  echo
  echo "## Machine"
  echo
  echo '```'
  echo "nproc: $(nproc)"
  lscpu | head -n 15
  echo "kernel: $(uname -srm)"
  echo "run: $started_at to $finished_at"
  echo "load average at start: $load_at_start"
  echo "load average at end:   $load_at_end"
  echo '```'
  echo
  echo "## What was measured"
  echo
  echo "- Upstream: $(nginx -v 2>&1 | sed 's/^nginx version: //'), worker_processes $nginx_worker_processes, static \`return 200\` JSON and a 5-event SSE body ending in \`data: [DONE]\`."
  echo "- nginx-proxy: the same nginx process, proxy_pass to an upstream block with keepalive 64."
  echo "- Portcullis: \`${portcullis_bin#"$repo_root"/}\` built from $portcullis_commit, \`serve --demo\` with its default config plus the \`bench\` models (provider openai) on the mock, called as alice. Workspace crates linked in: $portcullis_crates."
  echo "- LiteLLM: $litellm_line."
  echo "- Server CPU is the summed CPU time of the target's processes during the run, in % of one core (200% = both cores); wrk CPU likewise for the load generator. CPU µs/request is the target's CPU time divided by the requests it answered (for direct and nginx-proxy this is the one nginx process; for Portcullis and LiteLLM it excludes the nginx mock behind them)."
  echo
  for mode in "${modes[@]}"; do
    echo "## ${mode^}"
    echo
    echo "| target | peak RPS | server CPU at peak | server CPU µs/request at peak | wrk CPU at peak | offered RPS | achieved RPS | p50 ms | p99 ms |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for target in direct nginx-proxy portcullis litellm; do
      if [[ "$target" == litellm && "$litellm_status" != measured ]]; then
        echo "| litellm | $litellm_status | | | | | | | |"
        continue
      fi
      echo "| $target | $(median peak "$mode" "$target" 6) | $(median peak "$mode" "$target" 11)% | $(median peak "$mode" "$target" 14) | $(median peak "$mode" "$target" 12)% | ${fixed_rate[$mode]} | $(median fixed "$mode" "$target" 6) | $(ms "$(median fixed "$mode" "$target" 7)") | $(ms "$(median fixed "$mode" "$target" 8)") |"
    done
    echo
  done
  echo "## Against the targets"
  echo
  echo "| figure | non-streaming | streaming | target |"
  echo "|---|---:|---:|---|"
  row_proxy="| Portcullis peak / nginx-proxy peak"
  row_litellm="| Portcullis peak / LiteLLM peak"
  row_p99="| added p99: Portcullis p99 − direct p99 at the same offered rate"
  for mode in "${modes[@]}"; do
    value="$(ratio "$(median peak "$mode" portcullis 6)" "$(median peak "$mode" nginx-proxy 6)")"
    row_proxy+=" | $(judged "$value" "×" ">=" 0.5)"
    value=""
    if [[ "$litellm_status" == measured ]]; then
      value="$(ratio "$(median peak "$mode" portcullis 6)" "$(median peak "$mode" litellm 6)")"
    fi
    row_litellm+=" | $(judged "$value" "×" ">=" 10)"
    value="$(awk -v a="$(median fixed "$mode" portcullis 8)" -v b="$(median fixed "$mode" direct 8)" \
      'BEGIN { if (a != "" && b != "") printf "%.2f", (a - b) / 1000 }')"
    row_p99+=" | $(judged "$value" " ms" "<" 1)"
  done
  echo "$row_proxy | ≥ 0.5× |"
  echo "$row_litellm | ≥ 10× |"
  echo "$row_p99 | < 1 ms |"
  echo
  if ((failures > 0)); then
    echo "**The run failed:** $failures wrk run(s) saw non-2xx answers, socket errors or no requests. First: $first_failure_note"
    echo
  fi
  echo "## Every run"
  echo
  echo "| phase | round | mode | target | offered RPS | achieved RPS | p50 ms | p99 ms | non-2xx | socket errors | server CPU | server CPU µs/request | wrk CPU | load1 before |"
  echo "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  while IFS=$'\t' read -r phase round mode target rate rps p50_us p99_us non2xx socket_errors server_cpu wrk_cpu load1 cpu_per_request; do
    [[ "$rate" == 0 ]] && rate="–"
    echo "| $phase | $round | $mode | $target | $rate | $rps | $(ms "$p50_us") | $(ms "$p99_us") | $non2xx | $socket_errors | $server_cpu% | $cpu_per_request | $wrk_cpu% | $load1 |"
  done <"$runs_file"
} >"$report_file"

cat "$report_file"
log "report written to $report_file; raw logs in $run_dir"

if ((failures > 0)); then
  die "$failures run(s) saw non-2xx answers or socket errors"
fi
