-- wrk script for bench/inbound_webhook.py: replays pre-signed Twilio inbound webhooks.
--
--   wrk -t T ... -s bench/inbound_wrk.lua URL -- REQUESTS_FILE PATH T
--
-- REQUESTS_FILE holds one request per line, "<X-Twilio-Signature>\t<form body>". With T threads,
-- thread t (0-based) sends lines t, t+T, t+2T, ... in order, so no two threads ever send the same
-- MessageSid. A thread that runs out of lines starts over and counts it in "wrapped" (the
-- duplicates are then answered by the MessageSid dedupe, which the driver reports).
-- done() prints one line "WRK_JSON {...}" with the figures the driver parses.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local file = args[1]
  local path = args[2]
  local T = tonumber(args[3])
  reqs = {}
  sent = 0
  wrapped = 0
  local i = 0
  for line in io.lines(file) do
    if i % T == tid then
      local tab = string.find(line, "\t", 1, true)
      local sig = string.sub(line, 1, tab - 1)
      local body = string.sub(line, tab + 1)
      reqs[#reqs + 1] = wrk.format("POST", path, {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        ["X-Twilio-Signature"] = sig,
      }, body)
    end
    i = i + 1
  end
  count = #reqs
end

function request()
  sent = sent + 1
  if sent > count then
    wrapped = wrapped + 1
    return reqs[((sent - 1) % count) + 1]
  end
  return reqs[sent]
end

function done(summary, latency, requests)
  local issued = {}
  local wraps = 0
  for _, t in ipairs(threads) do
    issued[#issued + 1] = tostring(t:get("sent"))
    wraps = wraps + t:get("wrapped")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},' ..
    '"issued":[%s],"wrapped":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    table.concat(issued, ","), wraps))
end
