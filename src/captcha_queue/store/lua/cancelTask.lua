--- cancelTask: end a task as "cancelled" at once, wherever it is.
---
--- Queued or delayed: removed and finished. Claimed: finished too, and its lease token kept so the
--- holder's next renew / record_remote / complete / fail / release answers CANCELLED.
---
--- KEYS: the standard layout (includes/keys.lua).
--- ARGV: the standard prefix, then [A] task id.
--- Returns: {OK, result JSON} when cancelled now, {ALREADY_FINAL} when it had finished already,
---          {NOT_FOUND} when there is no such task, or {WRONG_TYPE, message}.
--- @include "keys"
--- @include "codes"
--- @include "util"
--- @include "state"
--- @include "finish"

local bad = wrong_type(core_checks())
if bad then
  return { WRONG_TYPE, bad }
end

local id = ARGV[A]
local st, raw, problem = load_state(id)
if st == nil then
  return { NOT_FOUND }
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
