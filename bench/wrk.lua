-- wrk script for bench/run.sh: lets wrk load a forward proxy and prints one parseable line.
--
-- WRK_TARGETS holds one or more request targets separated by spaces. An absolute-form target
-- (http://host:port/path, RFC 9112 §3.2.2) is what a client sends to a forward proxy; its Host
-- field is set to the target's authority, as a client would. An origin-form target (/path)
-- goes to the origin directly. One target: wrk builds the request once (its fast path). Several:
-- the requests are built here once and rotated, so a run spreads over many host names (S5).

local targets = {}
for t in string.gmatch(os.getenv("WRK_TARGETS") or "/", "%S+") do
   targets[#targets + 1] = t
end

local function host_of(target)
   return string.match(target, "^https?://([^/]+)")
end

if #targets == 1 then
   wrk.path = targets[1]
   local host = host_of(targets[1])
   if host then
      wrk.headers["Host"] = host
   end
else
   local requests = {}
   local index = 0
   for i, t in ipairs(targets) do
      local headers = {}
      local host = host_of(t)
      if host then
         headers["Host"] = host
      end
      requests[i] = wrk.format("GET", t, headers)
   end
   request = function()
      index = index % #requests + 1
      return requests[index]
   end
end

-- summary.duration is in microseconds, latency percentiles too. wrk counts a status >= 400 as
-- an error; socket errors (connect, read, write, timeout) are added here.
done = function(summary, latency, requests)
   local e = summary.errors
   local errors = e.connect + e.read + e.write + e.status + e.timeout
   local secs = summary.duration / 1e6
   io.write(string.format(
      "RESULT mode=wrk requests=%d secs=%.3f rps=%.1f p50_us=%d p99_us=%d errors=%d wire_bytes_avg=%d\n",
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50), latency:percentile(99), errors,
      summary.requests > 0 and math.floor(summary.bytes / summary.requests) or 0))
end
