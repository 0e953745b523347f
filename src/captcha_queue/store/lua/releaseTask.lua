--- releaseTask: give a claimed task back without consuming an attempt (shutdown, no solver capacity).
---
--- It returns to the head of its priority; its remote id is kept so the next claimer resumes it.
---
--- KEYS: the standard layout (includes/keys.lua); writes state, active, queue:*, wake.
--- ARGV: the standard prefix, then [A] task id, [A+1] lease token.
--- Returns: {OK} | {LEASE_LOST} | {CANCELLED} | {ALREADY_FINAL} | {WRONG_TYPE, message}.
--- @include "keys"
--- @include "codes"
--- @include "util"
--- @include "state"

local bad = wrong_type({
  { K.state, 'hash' }, { K.active, 'zset' },
  { K.queue.high, 'list' }, { K.queue.normal, 'list' }, { K.queue.low, 'list' },
})
if bad then
  return { WRONG_TYPE, bad }
end

local id, token = ARGV[A], ARGV[A + 1]
local st = load_state(id)
local code = check_lease(st, token)
if code ~= OK then
  return { code }
end
st.status = 'queued'
st.token = nil
st.worker = nil
save_state(id, st)
redis.call('ZREM', K.active, id)
redis.call('LPUSH', K.queue[st.priority], id)
arm_wake()
return { OK }
