-- wrk script for bench/overhead.sh: one chat completion POST per request,
-- optional fixed-rate pacing, and a count of every non-2xx answer.
--
-- It is configured through the environment because wrk passes no options to
-- the script before the request is built:
--   BENCH_MODEL          the model alias to put in the body
--   BENCH_STREAM         "true" for a streaming request, else "false"
--   BENCH_AUTHORIZATION  the Authorization header value, or empty for none
--   BENCH_RATE           total requests per second over all threads; 0 or
--                        unset means as fast as the target answers
--   BENCH_THREADS        the -t value given to wrk, to split the rate

local model = os.getenv("BENCH_MODEL") or "mock"
local stream = os.getenv("BENCH_STREAM") == "true"
local authorization = os.getenv("BENCH_AUTHORIZATION") or ""
local total_rate = tonumber(os.getenv("BENCH_RATE") or "0") or 0
local thread_count = tonumber(os.getenv("BENCH_THREADS") or "1") or 1

wrk.method = "POST"
wrk.body = string.format(
  '{"model":"%s","messages":[{"role":"user","content":"Say hello in one short sentence."}],'
    .. '"max_tokens":16,"stream":%s}',
  model,
  stream and "true" or "false"
)
wrk.headers["Content-Type"] = "application/json"
if authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end

-- Globals, not locals, so that done() can read them from each thread's state.
non2xx = 0
first_failure = ""

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_failure == "" then
      first_failure = tostring(status) .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

if total_rate > 0 then
  -- wrk has no fixed-rate mode, so each thread keeps its own send schedule
  -- (one slot every thread_count / total_rate seconds) and delay() holds the
  -- next request of whichever connection is free until its slot. A target
  -- that stalls briefly gets the late requests at once, as an open-loop
  -- client would send them; one that falls more than a second behind cannot
  -- keep up at all, so the schedule restarts instead of bursting, and the
  -- achieved rate in the report shows the shortfall.
  local ffi = require("ffi")
  ffi.cdef([[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock_id, bench_timespec *time);
  ]])
  local clock_monotonic = 1
  local timespec = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(clock_monotonic, timespec)
    return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
  end

  local slot_interval_ms = 1000 * thread_count / total_rate
  local next_slot_ms = nil

  function delay()
    local now = now_ms()
    if next_slot_ms == nil or next_slot_ms < now - 1000 then
      next_slot_ms = now
    end
    next_slot_ms = next_slot_ms + slot_interval_ms
    local wait_ms = next_slot_ms - now
    if wait_ms < 0 then
      return 0
    end
    -- wrk's timers have millisecond resolution and truncate, so round.
    return math.floor(wait_ms + 0.5)
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local non2xx_total = 0
  local failure = ""
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
    local thread_failure = thread:get("first_failure") or ""
    if failure == "" and thread_failure ~= "" then
      failure = thread_failure
    end
  end
  local errors = summary.errors
  local socket_errors = errors.connect + errors.read + errors.write + errors.timeout
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "BENCH_RESULT requests=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests,
    summary.requests / seconds,
    latency:percentile(50),
    latency:percentile(99),
    latency.max,
    non2xx_total,
    socket_errors
  ))
  if failure ~= "" then
    io.write("BENCH_FIRST_FAILURE " .. string.gsub(failure, "\n", " ") .. "\n")
  end
end
