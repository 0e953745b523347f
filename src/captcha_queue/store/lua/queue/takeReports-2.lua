--- takeReports: hand a worker of one account up to ARGV count report requests, under a lease.
---
--- Delivery is at least once: a request taken is kept in `reports_taken` until the worker acks it
--- (ZREM, after the service's answer); one whose lease passed (the worker died between take and
--- ack) is handed out again first. The "reported" mark (reportTask) keeps it to one request per task.
---
--- KEYS[1] reports LIST  report requests waiting (ReportRequest JSON)
--- KEYS[2] reports_taken ZSET  request JSON -> lease deadline ms (Redis time)
--- ARGV: the standard prefix, then [A] count, [A+1] lease ms.
--- Returns: {OK, request JSON...} | {WRONG_TYPE, message}.
--- @include "args"
--- @include "codes"
--- @include "util"

local count, lease_ms = tonumber(ARGV[A]), tonumber(ARGV[A + 1])
local bad = wrong_type({ { K.reports, 'list' }, { K.reports_taken, 'zset' } })
if bad then
  return { WRONG_TYPE, bad }
end
local now = now_ms()
local deadline = now + lease_ms
local reply = { OK }
for _, request in ipairs(redis.call('ZRANGE', K.reports_taken, '-inf', now, 'BYSCORE', 'LIMIT', 0, count)) do
  redis.call('ZADD', K.reports_taken, deadline, request)
  reply[#reply + 1] = request
end
local left = count - (#reply - 1)
if left > 0 then
  local popped = redis.call('LPOP', K.reports, left)
  if popped then
    for _, request in ipairs(popped) do
      redis.call('ZADD', K.reports_taken, deadline, request)
      reply[#reply + 1] = request
    end
  end
end
return reply
