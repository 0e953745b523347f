-- Time, number formatting, key type checks and the wake marker.

--- @include "clock"

-- Seconds with millisecond precision, as stored in Result and Task JSON.
local function fmt_s(ms)
  return string.format('%.3f', ms / 1000)
end

local function fmt_int(n)
  return string.format('%d', n)
end

-- A number read from Redis (tonumber also reads "nan", "inf" and "1e999"), or nil unless finite.
local function finite(value)
  local n = tonumber(value)
  if n and n == n and n > -math.huge and n < math.huge then
    return n
  end
  return nil
end

-- The first of `checks` ({key, type}, ...) whose key exists with another type, or nil.
-- Scripts check before writing anything: Redis does not roll a script back when a command fails.
local function wrong_type(checks)
  for _, check in ipairs(checks) do
    local found = redis.call('TYPE', check[1])['ok']
    if found ~= 'none' and found ~= check[2] then
      return check[1] .. ' is a ' .. found .. ', expected a ' .. check[2]
    end
  end
  return nil
end

-- The keys of the standard layout that every task transition touches, with their types.
local function core_checks()
  return {
    { K.tasks, 'hash' }, { K.state, 'hash' }, { K.active, 'zset' }, { K.delayed, 'zset' },
    { K.results, 'hash' }, { K.expiry, 'zset' }, { K.idem, 'hash' }, { K.dead, 'hash' },
    { K.dead_index, 'zset' }, { K.counters, 'hash' }, { K.events, 'stream' },
    { K.queue.high, 'list' }, { K.queue.normal, 'list' }, { K.queue.low, 'list' },
  }
end

-- One marker in the wake list: one blocked claimer wakes, claims, and re-arms it if work remains.
-- DEL first: the marker carries no data, and a wake key someone overwrote with another type heals.
local function arm_wake()
  redis.call('DEL', K.wake)
  redis.call('RPUSH', K.wake, '1')
end
