--- readStats: a snapshot of the namespace in one call (read only; a key of the wrong type reads as empty).
---
--- KEYS[1] queue_high LIST  task ids waiting at priority high, head first
--- KEYS[2] queue_normal LIST  ... at normal
--- KEYS[3] queue_low LIST  ... at low
--- KEYS[4] delayed ZSET  id -> ms a retry becomes claimable
--- KEYS[5] active ZSET  id -> lease deadline ms (Redis time)
--- KEYS[6] counters HASH  counters (a fixed set of integer fields)
--- KEYS[7] workers ZSET  worker id -> heartbeat deadline ms
--- KEYS[8] state HASH  id -> state JSON (includes/state.lua)
--- KEYS[9] dead HASH  id -> DeadLetter JSON
--- KEYS[10] epoch STRING  random id of this data set
--- KEYS[11] slots ZSET  solver slots in use of the stats' account
--- KEYS[12] slot_limit HASH  that account's configured / effective limit
--- ARGV: the standard prefix.
--- Returns: {queued high, queued normal, queued low, delayed, in flight,
---           {completed, failed, dead, cancelled, expired, submitted} (nil = 0),
---           live workers, oldest queued age ms (-1 = none),
---           solver slots used, solver slot limit | nil, dead letters held, epoch | nil}
--- The fleet's pause is not read here: AdminAPI.stats reads it as pause_state does (one parser).
--- @include "args"
--- @include "codes"
--- @include "util"
--- @include "state"

local function read(...)
  local value = redis.pcall(...)
  if type(value) == 'table' and value.err then
    return nil
  end
  return value
end

local now = now_ms()
local reply = {}
for _, priority in ipairs(PRIORITIES) do
  reply[#reply + 1] = read('LLEN', K.queue[priority]) or 0
end
reply[#reply + 1] = read('ZCARD', K.delayed) or 0
reply[#reply + 1] = read('ZCARD', K.active) or 0
reply[#reply + 1] = read('HMGET', K.counters, 'completed', 'failed', 'dead', 'cancelled', 'expired', 'submitted')
  or {}
reply[#reply + 1] = read('ZCOUNT', K.workers, now, '+inf') or 0

local oldest = -1
for _, priority in ipairs(PRIORITIES) do
  local head = read('LINDEX', K.queue[priority], 0)
  if head then
    local ok, st = pcall(load_state, head)
    if ok and st and type(st.submitted_ms) == 'number' and now - st.submitted_ms > oldest then
      oldest = now - st.submitted_ms
    end
  end
end
reply[#reply + 1] = oldest

-- Slots in use, as the acquire script counts them after reaping: every member but a ghost whose hold
-- is over (a live slot past its lease turns into a ghost and still counts). Admin slot_usage agrees.
local slots_used = read('ZCARD', K.slots) or 0
if slots_used > 0 then
  for _, member in ipairs(read('ZRANGEBYSCORE', K.slots, '-inf', '(' .. now, 'LIMIT', 0, 1000) or {}) do
    if string.sub(member, 1, 1) == '#' then
      slots_used = slots_used - 1
    end
  end
end
reply[#reply + 1] = slots_used
local limit = read('HMGET', K.slot_limit, 'effective', 'configured') or {}
reply[#reply + 1] = limit[1] or limit[2] or false
reply[#reply + 1] = read('HLEN', K.dead) or 0
reply[#reply + 1] = read('GET', K.epoch) or false
return reply
