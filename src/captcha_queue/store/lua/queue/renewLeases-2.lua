--- renewLeases: extend every lease a worker holds, in one call.
---
--- A lease is extended when the token still matches an active task, even past its deadline as long
--- as no claimer has reaped it yet (nobody else holds the task). Cancelled tasks are reported so the
--- worker drops them and frees their solver slots.
---
--- KEYS[1] state HASH  id -> state JSON (includes/state.lua)
--- KEYS[2] active ZSET  id -> lease deadline ms (Redis time)
--- ARGV: the standard prefix, then [A] lease_ms, followed by pairs: task id, lease token.
--- Returns: {OK, renewed ids, lost ids, cancelled ids, new deadline ms (parallel to renewed ids)}
---          or {WRONG_TYPE, message}.
--- @include "args"
--- @include "codes"
--- @include "util"
--- @include "state"
--- @include "fence"

local bad = wrong_type({ { K.active, 'zset' } }) -- state is read before the first write
if bad then
  return { WRONG_TYPE, bad }
end

local now = now_ms()
local deadline = now + tonumber(ARGV[A])
local renewed, lost, cancelled, deadlines = {}, {}, {}, {}
for i = A + 1, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local st = load_state(id)
  local code = check_lease(st, token)
  if code == OK then
    redis.call('ZADD', K.active, deadline, id)
    renewed[#renewed + 1] = id
    deadlines[#deadlines + 1] = deadline
  elseif code == CANCELLED then
    cancelled[#cancelled + 1] = id
  else
    lost[#lost + 1] = id
  end
end
return { OK, renewed, lost, cancelled, deadlines }
