--- cancelTask: end a task as "cancelled" at once, wherever it is.
---
--- Queued or delayed: removed and finished. Claimed: finished too, and its lease token kept so the
--- holder's next renew / record_remote / complete / fail / release answers CANCELLED.
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
--- KEYS[11] queue_high LIST  task ids waiting at priority high, head first
--- KEYS[12] queue_normal LIST  ... at normal
--- KEYS[13] queue_low LIST  ... at low
--- KEYS[14] webhooks HASH  task id -> webhook delivery JSON (written only for a task with a pingback)
--- KEYS[15] webhooks_due ZSET  task id -> ms of the delivery's next step
--- ARGV: the standard prefix, then [A] task id.
--- Returns: {OK, result JSON} when cancelled now, {ALREADY_FINAL} when it had finished already,
---          {NOT_FOUND} when there is no such task, or {WRONG_TYPE, message}.
--- @include "args"
--- @include "codes"
--- @include "util"
--- @include "state"
--- @include "finish"

local id = ARGV[A]
local st, raw, problem = load_state(id)
if st == nil then
  return { NOT_FOUND }
end
if st and st.status == 'done' then
  return { ALREADY_FINAL }
end
-- Checked before the first write: the path's keys (a malformed state is dead-lettered).
local checks = finish_checks(st or nil, st and 'cancelled' or 'error', not st and 'dead' or nil, false)
if not st then
  checks[#checks + 1] = { K.dead, 'hash' }
  checks[#checks + 1] = { K.dead_index, 'zset' }
elseif st.status == 'queued' then
  checks[#checks + 1] = { K.queue[st.priority], 'list' }
end
local bad = wrong_type(checks)
if bad then
  return { WRONG_TYPE, bad }
end
local now = now_ms()
if st == false then
  -- Unreadable state: finish it from a stand-in, keeping the raw entry in the dead-letter queue.
  dead_letter(id, placeholder_state(nil, now), 'malformed state', now, 'MALFORMED',
    state_message(problem), raw)
  return { ALREADY_FINAL }
end
if st.status == 'done' then
  return { ALREADY_FINAL }
end
if st.status == 'queued' then
  redis.call('LREM', K.queue[st.priority], 1, id)
elseif st.status == 'active' then
  st.attempts = st.attempts + 1
end
local json = finish(id, st, 'cancelled', now, { error_message = 'cancelled by the producer' })
return { OK, json }
