--- purgeReports: drop the report requests of one account ref that were made before a cutoff, waiting
--- and taken alike. A request waits for a worker of its account ref (name and key fingerprint); once
--- no worker serves that ref (the account was removed, its key rotated) it would wait forever, and a
--- service accepts a report only for a while after the solve anyway (Anti-Captcha: 60 seconds).
---
--- KEYS[1] reports LIST  report requests waiting (ReportRequest JSON), oldest first (reportTask appends)
--- KEYS[2] reports_taken ZSET  request JSON -> lease deadline ms: taken by a worker, not acked
--- KEYS[3] report_refs SET  account refs with report requests: the ref leaves it once both are empty
--- ARGV: the standard prefix, then [A] cutoff (unix seconds: a request whose requested_at is below it is
---       dropped; an unreadable one too), [A+1] the most requests looked at in the list, [A+2] the ref.
--- Returns: {OK, dropped request JSON...} | {WRONG_TYPE, message}. Everything is read before the first write.
--- @include "args"
--- @include "codes"
--- @include "util"

local cutoff, most, ref = tonumber(ARGV[A]), tonumber(ARGV[A + 1]), ARGV[A + 2]
local bad = wrong_type({ { K.reports, 'list' }, { K.reports_taken, 'zset' }, { K.report_refs, 'set' } })
if bad then
  return { WRONG_TYPE, bad }
end

local function before_cutoff(raw)
  local ok, request = pcall(cjson.decode, raw)
  if not ok or type(request) ~= 'table' or type(request.requested_at) ~= 'number' then
    return true
  end
  return request.requested_at < cutoff
end

-- The list is in the order the requests were made: the old ones are its head.
local waiting = 0
for _, raw in ipairs(redis.call('LRANGE', K.reports, 0, most - 1)) do
  if not before_cutoff(raw) then
    break
  end
  waiting = waiting + 1
end
local taken = {}
for _, raw in ipairs(redis.call('ZRANGE', K.reports_taken, 0, -1)) do
  if before_cutoff(raw) then
    taken[#taken + 1] = raw
  end
end

local reply = { OK }
if waiting > 0 then
  for _, raw in ipairs(redis.call('LPOP', K.reports, waiting)) do
    reply[#reply + 1] = raw
  end
end
for _, raw in ipairs(taken) do
  redis.call('ZREM', K.reports_taken, raw)
  reply[#reply + 1] = raw
end
if redis.call('LLEN', K.reports) == 0 and redis.call('ZCARD', K.reports_taken) == 0 then
  redis.call('SREM', K.report_refs, ref)
end
return reply
