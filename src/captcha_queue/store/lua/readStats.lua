--- readStats: a snapshot of the namespace in one call (read only; a key of the wrong type reads as empty).
---
--- KEYS: the standard layout (includes/keys.lua), then [19] slots(account), [20] slot_limit(account).
--- ARGV: the standard prefix.
--- Returns: {queued high, queued normal, queued low, delayed, in flight,
---           {completed, failed, dead, cancelled, expired, submitted} (nil = 0),
---           live workers, oldest queued age ms (-1 = none), paused reason | nil,
---           solver slots used, solver slot limit | nil, dead letters held, epoch | nil}
--- @include "keys"
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

local paused = false
if read('EXISTS', K.paused) == 1 then
  local fields = read('HMGET', K.paused, 'reason', 'until_ms') or {}
  local until_ms = tonumber(fields[2])
  if not until_ms or until_ms > now then
    paused = fields[1] or 'paused'
  end
end
reply[#reply + 1] = paused
reply[#reply + 1] = read('ZCOUNT', KEYS[19], now, '+inf') or 0
local limit = read('HMGET', KEYS[20], 'effective', 'configured') or {}
reply[#reply + 1] = limit[1] or limit[2] or false
reply[#reply + 1] = read('HLEN', K.dead) or 0
reply[#reply + 1] = read('GET', K.epoch) or false
return reply
