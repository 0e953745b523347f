--- reportTask: queue a verdict on a solved task's answer for the account that solved it, once.
---
--- The producer holds no solver key, so the verdict travels through Redis: this script checks the
--- task has a success result with a remote id solved by ARGV account, that no verdict was queued for
--- it before, marks its state ("reported") and appends the request to that account's report list;
--- a worker of the account takes it (takeReports) and tells the service.
---
--- KEYS[1] state HASH  id -> state JSON (includes/state.lua)
--- KEYS[2] results HASH  id -> final Result JSON
--- KEYS[3] reports LIST  report requests (ReportRequest JSON) waiting for a worker of the account
--- KEYS[4] report_refs SET  account refs with report requests (report_backlog lists them)
--- ARGV: the standard prefix, then [A] task id, [A+1] account ref (the result's), [A+2] "good" | "bad",
---       [A+3] the request (ReportRequest JSON, as the worker acks it: queue/_reports.py).
--- Returns: {OK} | {ALREADY_REPORTED, the verdict queued before} | {NOT_FOUND, why} | {WRONG_TYPE, message}.
--- @include "args"
--- @include "codes"
--- @include "util"
--- @include "state"

local id, account, verdict = ARGV[A], ARGV[A + 1], ARGV[A + 2]
if verdict ~= 'good' and verdict ~= 'bad' then
  return { NOT_FOUND, 'the verdict must be good or bad' }
end
local raw = redis.call('HGET', K.results, id)
if not raw then
  return { NOT_FOUND, 'no result (unknown task, not finished, or its result expired)' }
end
local ok, result = pcall(cjson.decode, raw)
if not ok or type(result) ~= 'table' then
  return { NOT_FOUND, 'its result cannot be read' }
end
if result.status ~= 'success' or type(result.remote_id) ~= 'string' or type(result.account) ~= 'string' then
  return { NOT_FOUND, 'it has no answer from a solver account to report on' }
end
if result.account ~= account then
  return { NOT_FOUND, 'it was solved by another account' }
end
local st, _, problem = load_state(id)
if not st then
  return { NOT_FOUND, state_message(problem) }
end
if st.reported then
  return { ALREADY_REPORTED, st.reported }
end
local bad = wrong_type({ { K.reports, 'list' }, { K.report_refs, 'set' } })
if bad then
  return { WRONG_TYPE, bad }
end
st.reported = verdict
save_state(id, st)
redis.call('RPUSH', K.reports, ARGV[A + 3])
redis.call('SADD', K.report_refs, account)
return { OK }
