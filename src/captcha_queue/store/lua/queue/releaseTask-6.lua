--- releaseTask: give a claimed task back without consuming an attempt (shutdown, no solver capacity).
---
--- It returns to the head of its priority; its remote id is kept so the next claimer resumes it.
---
--- KEYS[1] state HASH  id -> state JSON (includes/state.lua)
--- KEYS[2] active ZSET  id -> lease deadline ms (Redis time)
--- KEYS[3] queue_high LIST  task ids waiting at priority high, head first
--- KEYS[4] queue_normal LIST  ... at normal
--- KEYS[5] queue_low LIST  ... at low
--- KEYS[6] wake LIST  one marker blocked claimers BLPOP on
--- ARGV: the standard prefix, then [A] task id, [A+1] lease token.
--- Returns: {OK} | {LEASE_LOST} | {CANCELLED} | {ALREADY_FINAL} | {WRONG_TYPE, message}.
--- @include "args"
--- @include "codes"
--- @include "util"
--- @include "state"
--- @include "fence"

local id, token = ARGV[A], ARGV[A + 1]
local st = load_state(id)
local code = check_lease(st, token)
if code ~= OK then
  return { code }
end
-- state was read above; wake heals itself.
local bad = wrong_type({ { K.active, 'zset' }, { K.queue[st.priority], 'list' } })
if bad then
  return { WRONG_TYPE, bad }
end
st.status = 'queued'
st.token = nil
st.worker = nil
save_state(id, st)
redis.call('ZREM', K.active, id)
redis.call('LPUSH', K.queue[st.priority], id)
arm_wake()
return { OK }
