#!/usr/bin/env bash
# Measures how fast an order reaches every replica and how fast it stops the
# streams already running, with 1, 4 and 8 replicas on one PostgreSQL (and a
# single node on SQLite for comparison), all on this machine.
#
# For each deployment it starts the replicas (`portcullis serve --demo`,
# replica ids r1..rN, one database), keeps streams running for an affected
# pair (emeka, a foreign person, on `fable`) on every replica plus ordinary
# traffic for an unaffected pair (alice on `haiku`), and then, BENCH_ORDERS
# times: applies an order suspending emeka from `fable` through r1's admin
# API, waits until every replica has applied it, reads the receipt, lifts the
# order and waits for the streams to be running again.
#
# It reports p50 / p99 of:
#   commit -> last replica applied  receipt: max over replicas of
#                                    applied_at - the order's created_at
#   applied -> stream cut           per cut stream: the moment the client got
#                                    the terminal error event minus the
#                                    applied_at of the replica serving it
#   admitted after enforcement      receipt, summed over orders (must be 0)
# and writes the report to bench/out/recall-<timestamp>.md.
#
# Environment knobs (defaults in brackets):
#   BENCH_ORDERS            [50]        orders applied per deployment
#   BENCH_REPLICAS          [1 4 8]     PostgreSQL deployments to measure
#   BENCH_SQLITE            [1]         also measure a single SQLite node
#   BENCH_STREAMS_PER_REPLICA [2]       affected streams kept running
#   BENCH_SKIP_BUILD        [0]         1 skips `cargo build --release`
#   PORTCULLIS_BIN          [$CARGO_TARGET_DIR or target, then /release/portcullis]
#   PORTCULLIS_TEST_PG_BIN  [newest /usr/lib/postgresql/*/bin]
set -euo pipefail

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$bench_dir/.." && pwd)"
out_dir="$bench_dir/out"
timestamp="$(date -u +%Y%m%dT%H%M%SZ)"
run_dir="$out_dir/recall-run-$timestamp"
report_file="$out_dir/recall-$timestamp.md"
orders="${BENCH_ORDERS:-50}"
replica_counts="${BENCH_REPLICAS:-1 4 8}"
measure_sqlite="${BENCH_SQLITE:-1}"
streams_per_replica="${BENCH_STREAMS_PER_REPLICA:-2}"
portcullis_bin="${PORTCULLIS_BIN:-${CARGO_TARGET_DIR:-$repo_root/target}/release/portcullis}"
pg_bin="${PORTCULLIS_TEST_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"

mkdir -p "$run_dir"
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "${BENCH_SKIP_BUILD:-0}" != "1" ]; then
  log "building the release binary"
  (cd "$repo_root" && cargo build --release --locked -p portcullis) >&2
fi
[ -x "$portcullis_bin" ] || die "no binary at $portcullis_bin"
[ -x "$pg_bin/initdb" ] || die "no PostgreSQL binaries in '$pg_bin' (set PORTCULLIS_TEST_PG_BIN)"
command -v python3 >/dev/null || die "python3 is needed for the load and the statistics"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# PostgreSQL refuses to run as root; then it runs as the postgres user.
as_pg() {
  if [ "$(id -u)" = "0" ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${pg_data:-}" ]; then as_pg "$pg_bin/pg_ctl -D $pg_data -m immediate stop" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

pg_port=$(free_port)
pg_data="$run_dir/pg"
mkdir -p "$pg_data"
[ "$(id -u)" = "0" ] && chown postgres:postgres "$pg_data" "$run_dir"
log "starting PostgreSQL on 127.0.0.1:$pg_port"
as_pg "$pg_bin/initdb -D $pg_data -A trust -U postgres" >/dev/null
as_pg "$pg_bin/pg_ctl -D $pg_data -o '-p $pg_port -k $pg_data -c listen_addresses=127.0.0.1 -c max_connections=300' -l $pg_data/server.log -w start" >/dev/null

# start_replicas NAME COUNT STORE_URL: starts COUNT replicas and prints their
# data directories, one per line, once each has written demo-keys.json.
start_replicas() {
  local name=$1 count=$2 store_url=$3 i dir
  for i in $(seq 1 "$count"); do
    dir="$run_dir/$name/r$i"
    mkdir -p "$dir"
    {
      [ -n "$store_url" ] && printf '[store]\nurl = "%s"\n\n' "$store_url"
      printf '[replica]\nid = "r%s"\n\n[mock]\ntoken_interval_ms = 5\n' "$i"
    } >"$dir/portcullis.toml"
    "$portcullis_bin" serve --demo --data "$dir" --config "$dir/portcullis.toml" \
      --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 2>"$dir/serve.log" &
    pids+=($!)
  done
  for i in $(seq 1 "$count"); do
    dir="$run_dir/$name/r$i"
    for _ in $(seq 1 600); do
      [ -s "$dir/demo-keys.json" ] && break
      sleep 0.1
    done
    [ -s "$dir/demo-keys.json" ] || die "replica r$i of $name did not start; see $dir/serve.log"
  done
}

stop_replicas() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}

measure() {
  local name=$1 count=$2
  log "$name: $orders orders, $count replica(s)"
  python3 - "$run_dir/$name" "$count" "$orders" "$streams_per_replica" >"$run_dir/$name.json" <<'PY'
import http.client, json, sys, threading, time, urllib.request

base, count, orders, streams = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
replicas = []
for i in range(1, count + 1):
    with open(f"{base}/r{i}/demo-keys.json") as f:
        replicas.append(json.load(f))
r1 = replicas[0]
emeka, alice = r1["keys"]["emeka"], r1["keys"]["alice"]
stop = threading.Event()
cuts, cuts_lock = [], threading.Lock()
running = [0] * count
running_lock = threading.Lock()

def now_ms():
    return time.time() * 1000.0

def admin(method, path, body=None):
    request = urllib.request.Request(
        f"http://{r1['admin_listen']}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {r1['admin_token']}", "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)

def affected_stream(index):
    # One long stream for emeka on fable, reopened whenever it ends; records
    # when the client receives the terminal error event of a cut.
    host, port = replicas[index]["listen"].rsplit(":", 1)
    body = json.dumps({"model": "fable", "stream": True, "max_tokens": 100000,
                       "messages": [{"role": "user", "content": "Write a long poem."}]})
    while not stop.is_set():
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        counted = False
        try:
            connection.request("POST", "/v1/chat/completions", body, {
                "authorization": f"Bearer {emeka}", "content-type": "application/json",
                "x-mock-token-interval-ms": "20"})
            response = connection.getresponse()
            if response.status != 200:
                time.sleep(0.05)
                continue
            with running_lock:
                running[index] += 1
            counted = True
            for line in response:
                if line.startswith(b"data: ") and b'"error"' in line:
                    at = now_ms()
                    event = json.loads(line[6:])
                    with cuts_lock:
                        cuts.append({"replica": f"r{index + 1}", "at_ms": at,
                                     "message": event["error"].get("message", "")})
                    break
        except (OSError, http.client.HTTPException, ValueError):
            time.sleep(0.05)
        finally:
            if counted:
                with running_lock:
                    running[index] -= 1
            connection.close()

def unaffected_load(index):
    host, port = replicas[index]["listen"].rsplit(":", 1)
    body = json.dumps({"model": "haiku", "max_tokens": 8,
                       "messages": [{"role": "user", "content": "hello"}]})
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    while not stop.is_set():
        try:
            connection.request("POST", "/v1/chat/completions", body, {
                "authorization": f"Bearer {alice}", "content-type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"unaffected request failed with {response.status}")
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(host, int(port), timeout=30)

def wait_for(condition, what, seconds=60):
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)

threads = [threading.Thread(target=affected_stream, args=(i,), daemon=True)
           for i in range(count) for _ in range(streams)]
threads += [threading.Thread(target=unaffected_load, args=(i,), daemon=True) for i in range(count)]
for thread in threads:
    thread.start()

results = []
for n in range(orders):
    wait_for(lambda: all(r >= streams for r in running), "the streams to be running")
    reference = f"BENCH-RECALL-{n}"
    order = admin("POST", "/admin/v1/orders", {
        "reference": reference, "issuer": "bench", "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "effective_at": None, "effect": "suspend", "models": ["fable"],
        "principals": {"ids": ["emeka"]}, "reason": "recall benchmark"})
    def all_applied():
        receipt = admin("GET", f"/admin/v1/orders/{order['id']}")["receipt"]
        return len(receipt["replicas"]) >= count
    wait_for(all_applied, f"every replica to apply {reference}")
    # The 451 message quotes the reference in back-ticks; matching the bare
    # reference would count order BENCH-RECALL-10's cuts as order 1's.
    quoted = f"`{reference}`"
    wait_for(lambda: sum(1 for c in list(cuts) if quoted in c["message"]) >= count * streams,
             f"the streams of {reference} to be cut", seconds=30)
    receipt = admin("GET", f"/admin/v1/orders/{order['id']}")["receipt"]
    results.append({"reference": reference, "replicas": receipt["replicas"]})
    admin("POST", f"/admin/v1/orders/{order['id']}/lift", {"reason": "benchmark"})

stop.set()
print(json.dumps({"orders": results, "cuts": cuts}))
PY
}

summarise() {
  python3 - "$@" <<'PY'
import json, math, sys
from datetime import datetime

def ms(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000.0

def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]

print("| deployment | orders | commit -> last replica applied p50 / p99 (ms) | applied -> stream cut p50 / p99 (ms) | streams cut | admitted after enforcement |")
print("|---|---|---|---|---|---|")
failed = False
for path in sys.argv[1:]:
    name = path.rsplit("/", 1)[-1].removesuffix(".json")
    data = json.load(open(path))
    to_last, cut_latency, admitted = [], [], 0
    for order in data["orders"]:
        replicas = order["replicas"]
        to_last.append(max(r["commit_to_applied_ms"] for r in replicas))
        applied_at = {r["replica"]: ms(r["applied_at"]) for r in replicas}
        admitted += sum(r["admitted_after_enforcement"] or 0 for r in replicas)
        # Pair each cut with the order that caused it by the exact, quoted
        # reference: `BENCH-RECALL-1` is a prefix of `BENCH-RECALL-10`, and
        # pairing by substring matched later orders' cuts with this order's
        # applied time, seconds earlier.
        quoted = f"`{order['reference']}`"
        for cut in data["cuts"]:
            if quoted in cut["message"] and cut["replica"] in applied_at:
                cut_latency.append(cut["at_ms"] - applied_at[cut["replica"]])
    failed |= admitted != 0
    print(f"| {name} | {len(data['orders'])} | {pct(to_last, 50):.1f} / {pct(to_last, 99):.1f} "
          f"| {pct(cut_latency, 50):.1f} / {pct(cut_latency, 99):.1f} | {len(cut_latency)} | {admitted} |")
sys.exit(1 if failed else 0)
PY
}

results=()
if [ "$measure_sqlite" = "1" ]; then
  start_replicas sqlite-1 1 ""
  measure sqlite-1 1
  results+=("$run_dir/sqlite-1.json")
  stop_replicas
fi
for count in $replica_counts; do
  database="recall_$count"
  as_pg "$pg_bin/createdb -h 127.0.0.1 -p $pg_port -U postgres $database"
  start_replicas "postgres-$count" "$count" "postgres://postgres@127.0.0.1:$pg_port/$database"
  measure "postgres-$count" "$count"
  results+=("$run_dir/postgres-$count.json")
  stop_replicas
done

status=0
summarise "${results[@]}" >"$run_dir/table.md" || status=$?
{
  echo "# Recall benchmark, $timestamp"
  echo
  echo "Machine: $(nproc) cores, $(uname -sr); binary: $portcullis_bin; PostgreSQL: $("$pg_bin/postgres" --version)."
  echo "Command: bench/recall.sh (BENCH_ORDERS=$orders, BENCH_REPLICAS='$replica_counts', BENCH_STREAMS_PER_REPLICA=$streams_per_replica)."
  echo
  cat "$run_dir/table.md"
} >"$report_file"
cat "$report_file"
log "report written to $report_file"
[ "$status" = "0" ] || log "some request was admitted after enforcement"
exit "$status"
