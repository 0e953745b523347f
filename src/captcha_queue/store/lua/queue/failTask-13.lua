--- failTask: record a failed attempt of a claimed task.
---
--- With retry_in_ms and attempts left: the task waits in the delayed set (promoted by the claim
--- path), its remote id cleared (a retry is a fresh solve). With retry_in_ms and no attempts left:
--- dead-lettered ("max_attempts") with the history, and finished "error". Without retry_in_ms: a
--- fatal error, finished "error" at once.
---
--- KEYS[1] state HASH  id -> state JSON (includes/state.lua)
--- KEYS[2] results HASH  id -> final Result JSON
--- KEYS[3] active ZSET  id -> lease deadline ms (Redis time)
--- KEYS[4] delayed ZSET  id -> ms a retry becomes claimable
--- KEYS[5] expiry ZSET  id -> ms a finished task's fields are deleted
--- KEYS[6] counters HASH  counters (a fixed set of integer fields)
--- KEYS[7] events STREAM  final results (capped)
--- KEYS[8] tasks HASH  id -> Task JSON (immutable)
--- KEYS[9] dead HASH  id -> DeadLetter JSON
--- KEYS[10] dead_index ZSET  id -> ms it was dead-lettered
--- KEYS[11] wake LIST  one marker blocked claimers BLPOP on
--- KEYS[12] webhooks HASH  task id -> webhook delivery JSON (written only for a task with a pingback)
--- KEYS[13] webhooks_due ZSET  task id -> ms of the delivery's next step
--- ARGV: the standard prefix, then [A] task id, [A+1] lease token, [A+2] error code,
---       [A+3] error message, [A+4] retry_in_ms ("" = fatal), [A+5] provider, [A+6] account ref
---       (both may be ''): who made the last attempt, kept in a final error result (no remote id:
---       an error is never reported for a refund).
--- Returns: {OK, result JSON} | {RETRY_SCHEDULED, due ms} | {ALREADY_FINAL, stored result JSON | nil}
---          | {LEASE_LOST} | {CANCELLED} | {WRONG_TYPE, message}.
--- @include "args"
--- @include "codes"
--- @include "util"
--- @include "state"
--- @include "fence"
--- @include "finish"

local id, token, error_code, error_message, retry_in = ARGV[A], ARGV[A + 1], ARGV[A + 2], ARGV[A + 3], ARGV[A + 4]
local st, refusal = state_for_finish(id, token)
if refusal then
  return refusal
end
-- The keys of the path this call takes, checked before its first write.
local checks
if retry_in == '' then
  checks = finish_checks(st, 'error', nil, true)
elseif st.attempts + 1 >= st.max_attempts then
  checks = finish_checks(st, 'error', 'dead', false)
  checks[#checks + 1] = { K.dead_index, 'zset' } -- HSET dead is its first write; tasks is only read
else
  checks = { { K.active, 'zset' }, { K.delayed, 'zset' } } -- state was read; wake heals itself
end
local bad = wrong_type(checks)
if bad then
  return { WRONG_TYPE, bad }
end
local now = now_ms()
local extra = {
  error_code = error_code, error_message = error_message, provider = ARGV[A + 5], account = ARGV[A + 6],
}

if retry_in == '' then
  add_history(st, now, 'error', error_code, error_message)
  st.attempts = st.attempts + 1
  return { OK, finish(id, st, 'error', now, extra) }
end

add_history(st, now, 'retry', error_code, error_message)
st.attempts = st.attempts + 1
if st.attempts >= st.max_attempts then
  return { OK, dead_letter(id, st, 'max_attempts', now, error_code, error_message, nil, extra) }
end
local due = now + tonumber(retry_in)
st.status = 'delayed'
st.token = nil
st.worker = nil
st.remote_id = nil
st.remote_ms = nil
save_state(id, st)
redis.call('ZREM', K.active, id)
redis.call('ZADD', K.delayed, due, id)
-- Blocked claimers computed their timeout before this retry existed: wake one to recompute it.
arm_wake()
return { RETRY_SCHEDULED, due }
