-- wrk script of benches/http.sh: POST /dispatch with varied bodies (the
-- distribution of benches/load.rs: zipcodes of the demo roster's three
-- regions, days 1-300 ahead, three-hour windows, a unique Idempotency-Key
-- each), counting answers by status. done() prints one JSON line.
--
-- The key prefix comes from the environment (WRK_KEY_PREFIX), so that
-- runs against one server never share keys.

local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local regions = {94100, 10000, 60600}
local prefix = os.getenv("WRK_KEY_PREFIX") or "wrk"
local today = os.time()
local n = 0
statuses = {}

function init(args)
  math.randomseed(id * 7919 + today % 1000003)
end

function request()
  n = n + 1
  local zipcode = regions[math.random(1, 3)] + math.random(0, 99)
  local day = os.date("!%Y-%m-%d", today + 86400 * math.random(1, 300))
  local hour = math.random(6, 17)
  local body = string.format(
    '{"customer_id":"cust-%d-%d","property_id":"prop-%d","zipcode":"%05d",' ..
    '"window":{"start":"%sT%02d:00:00Z","end":"%sT%02d:00:00Z"},"duration_minutes":30}',
    id, n, n, zipcode, day, hour, day, hour + 3)
  local headers = {
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("%s-%d-%d", prefix, id, n),
  }
  return wrk.format("POST", "/dispatch", headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local mix = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      mix[status] = (mix[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(mix) do
    table.insert(parts, string.format('"%d":%d', status, count))
  end
  table.sort(parts)
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,' ..
    '"max_ms":%.3f,"socket_errors":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    latency.max / 1000, errors.connect + errors.read + errors.write + errors.timeout,
    table.concat(parts, ",")))
end
