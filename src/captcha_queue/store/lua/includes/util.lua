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

-- Every counter field a script may HINCRBY. HINCRBY fails on a field that is not an integer, so a
-- script that would increment one checks them all first.
local COUNTER_FIELDS = { 'submitted', 'completed', 'failed', 'dead', 'cancelled', 'expired', 'requeued' }

local function bad_counter(key)
  local values = redis.call('HMGET', key, unpack(COUNTER_FIELDS))
  for i = 1, #COUNTER_FIELDS do
    local value = values[i]
    -- What Redis itself reads as an integer, with room left to count on (at most 18 digits).
    local digits = value and string.match(value, '^-?([1-9]%d*)$')
    if value and value ~= '0' and not (digits and #digits <= 18) then
      return key .. ' field ' .. COUNTER_FIELDS[i] .. ' is not an integer HINCRBY can add to'
    end
  end
  return nil
end

-- The first of `checks` ({key, type}, ...) whose key exists with another type, or nil. A counters
-- hash (type 'counters') must also hold integers only.
-- Scripts check before writing anything: Redis does not roll a script back when a command fails.
local function wrong_type(checks)
  for _, check in ipairs(checks) do
    local expected = check[2] == 'counters' and 'hash' or check[2]
    local found = redis.call('TYPE', check[1])['ok']
    if found ~= 'none' and found ~= expected then
      return check[1] .. ' is a ' .. found .. ', expected a ' .. expected
    end
    if check[2] == 'counters' and found == 'hash' then
      local bad = bad_counter(check[1])
      if bad then
        return bad
      end
    end
  end
  return nil
end

-- The keys of the standard layout that every task transition touches, with their types.
local function core_checks()
  return {
    { K.tasks, 'hash' }, { K.state, 'hash' }, { K.active, 'zset' }, { K.delayed, 'zset' },
    { K.results, 'hash' }, { K.expiry, 'zset' }, { K.idem, 'hash' }, { K.dead, 'hash' },
    { K.dead_index, 'zset' }, { K.counters, 'counters' }, { K.events, 'stream' },
    { K.queue.high, 'list' }, { K.queue.normal, 'list' }, { K.queue.low, 'list' },
  }
end

-- One marker in the wake list: one blocked claimer wakes, claims, and re-arms it if work remains.
-- DEL first: the marker carries no data, and a wake key someone overwrote with another type heals.
local function arm_wake()
  redis.call('DEL', K.wake)
  redis.call('RPUSH', K.wake, '1')
end
