-- wrk script of every load figure; bench/load.py runs it and reads its last line.
-- usage: wrk ... -s load.lua URL -- FILE [PATCH_SHARE [random]]
--   FILE: lines "<key>\t<path of a GET by number>"; every GET is formatted once.
--   PATCH_SHARE (0 to 1, default 0): the share of requests that are a PATCH of the same path
--   with a fresh first name; "random": each request picks a line at random (default: every
--   thread rotates through the lines from its own starting point).
-- With BENCH_STATUSES=1 in the environment, answers are counted by status code (wrk then
-- parses every response's headers and body, so the GET figures run without it).

local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local gets, patches = {}, {}
local index = 0
sent, answered, statuses = 0, 0, {}

function init(args)
  for line in io.lines(args[1]) do
    local key, path = line:match("^(%S+)\t(%S+)$")
    if key then
      gets[#gets + 1] = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. key })
      patches[#patches + 1] = { path, { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" } }
    end
  end
  if #gets == 0 then
    error("no requests in " .. args[1])
  end
  local share, random = tonumber(args[2] or "0"), args[3] == "random"
  math.randomseed(1000 + (tid or 0))
  -- threads start at different places of the rotation
  index = ((tid or 0) * 7919) % #gets
  if share > 0 or random then
    request = function()
      sent = sent + 1
      index = random and math.random(#gets) or index % #gets + 1
      if share >= 1 or (share > 0 and math.random() < share) then
        local path, headers = patches[index][1], patches[index][2]
        return wrk.format("PATCH", path, headers, string.format('{"first_name":"Bench %d.%d"}', tid or 0, sent))
      end
      return gets[index]
    end
  end
end

function request()
  index = index % #gets + 1
  return gets[index]
end

if os.getenv("BENCH_STATUSES") == "1" then
  function response(status, headers, body)
    answered = answered + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local out, seen = {}, {}
  local total_sent, total_answered = 0, 0
  for _, thread in ipairs(threads) do
    total_sent = total_sent + (thread:get("sent") or 0)
    total_answered = total_answered + (thread:get("answered") or 0)
    for status, count in pairs(thread:get("statuses") or {}) do
      seen[status] = (seen[status] or 0) + count
    end
  end
  for status, count in pairs(seen) do
    out[#out + 1] = string.format('"%d":%d', status, count)
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,'
      .. '"write_errors":%d,"status_errors":%d,"timeouts":%d,"latency_mean_us":%.1f,"latency_stdev_us":%.1f,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"sent":%d,"answered":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, total_sent, total_answered, table.concat(out, ",")))
end
