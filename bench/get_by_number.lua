-- wrk script for the GET figures: rotate through (key, phone number) pairs, each request
-- pre-formatted once, and print the summary as one JSON line for bench/load.py.
-- usage: wrk ... -s get_by_number.lua URL -- PAIRS_FILE   (lines: "<key>\t<path>")

local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests = {}
local index = 0

function init(args)
  for line in io.lines(args[1]) do
    local key, path = line:match("^(%S+)\t(%S+)$")
    if key then
      requests[#requests + 1] = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. key })
    end
  end
  if #requests == 0 then
    error("no requests in " .. args[1])
  end
  -- threads start at different places of the rotation
  index = ((tid or 0) * 7919) % #requests
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,'
      .. '"write_errors":%d,"status_errors":%d,"timeouts":%d,"latency_mean_us":%.1f,"latency_stdev_us":%.1f,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
