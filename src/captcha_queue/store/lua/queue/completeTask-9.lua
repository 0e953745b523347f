--- completeTask: finish a claimed task with its solution.
---
--- Fenced: only the holder of the current lease token writes. A retry of a complete that already
--- went through (same token) answers ALREADY_FINAL with the stored result, so the caller can tell.
---
--- KEYS[1] state HASH  id -> state JSON (includes/state.lua)
--- KEYS[2] results HASH  id -> final Result JSON
--- KEYS[3] active ZSET  id -> lease deadline ms (Redis time)
--- KEYS[4] delayed ZSET  id -> ms a retry becomes claimable
--- KEYS[5] expiry ZSET  id -> ms a finished task's fields are deleted
--- KEYS[6] counters HASH  counters (a fixed set of integer fields)
--- KEYS[7] events STREAM  final results (capped)
--- KEYS[8] webhooks HASH  task id -> webhook delivery JSON (written only for a task with a pingback)
--- KEYS[9] webhooks_due ZSET  task id -> ms of the delivery's next step
--- ARGV: the standard prefix, then [A] task id, [A+1] lease token, [A+2] Solution JSON, [A+3] provider,
---       [A+4] account ref (both may be ''): kept in the result with the state's remote id, so a
---       verdict on the answer can reach the account that solved it (reportTask).
--- Returns: {OK, result JSON} | {ALREADY_FINAL, stored result JSON | nil} | {LEASE_LOST} | {CANCELLED}
---          | {WRONG_TYPE, message}.
--- @include "args"
--- @include "codes"
--- @include "util"
--- @include "state"
--- @include "fence"
--- @include "finish"

local id, token = ARGV[A], ARGV[A + 1]
local st, refusal = state_for_finish(id, token)
if refusal then
  return refusal
end
local bad = wrong_type(finish_checks(st, 'success', nil, true))
if bad then
  return { WRONG_TYPE, bad }
end
local now = now_ms()
st.attempts = st.attempts + 1
local json = finish(id, st, 'success', now, {
  solution = ARGV[A + 2], provider = ARGV[A + 3], account = ARGV[A + 4], remote_id = st.remote_id,
})
if not json then
  return { ALREADY_FINAL, redis.call('HGET', K.results, id) }
end
return { OK, json }
