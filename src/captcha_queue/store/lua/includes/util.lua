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
-- script that would increment one checks it first.
local COUNTER_FIELDS = { 'submitted', 'completed', 'failed', 'dead', 'cancelled', 'expired', 'requeued' }

-- What is wrong with a counter value (nil = absent or usable): what Redis itself reads as an integer,
-- with room left to count on (at most 18 digits).
local function bad_counter_value(key, field, value)
  local digits = value and string.match(value, '^-?([1-9]%d*)$')
  if value and value ~= '0' and not (digits and #digits <= 18) then
    return key .. ' field ' .. field .. ' is not an integer HINCRBY can add to'
  end
  return nil
end

-- The one counter field a hot path increments, checked in one command (HGET; on a key of another
-- type its error is read as such): a message, or nil when HINCRBY will work.
local function bad_counter(key, field)
  local value = redis.pcall('HGET', key, field)
  if type(value) == 'table' and value.err then
    return key .. ' is a ' .. redis.call('TYPE', key)['ok'] .. ', expected a hash'
  end
  return bad_counter_value(key, field, value or nil)
end

local function type_problem(key, kind)
  local expected = kind == 'counters' and 'hash' or kind
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= expected then
    return key .. ' is a ' .. found .. ', expected a ' .. expected
  end
  if kind == 'counters' and found == 'hash' then
    local values = redis.call('HMGET', key, unpack(COUNTER_FIELDS))
    for i = 1, #COUNTER_FIELDS do
      local bad = bad_counter_value(key, COUNTER_FIELDS[i], values[i])
      if bad then
        return bad
      end
    end
  end
  return nil
end

-- The first of `checks` whose key exists with another type (or holds a counter HINCRBY cannot add
-- to), as a message, or nil. A check is {key, type}, where type 'counters' stands for a hash whose
-- counter fields (the ones named after it, or all of them) must be integers.
--
-- Scripts check, before their first write, only the keys they are about to write: Redis does not roll
-- a script back when a command fails, and a key a script has already read (HGET state...) or writes
-- first needs no check (its failure leaves nothing written).
local function wrong_type(checks)
  for _, check in ipairs(checks) do
    if check[2] == 'counters' and #check > 2 then
      for i = 3, #check do
        local bad = bad_counter(check[1], check[i])
        if bad then
          return bad
        end
      end
    else
      local bad = type_problem(check[1], check[2])
      if bad then
        return bad
      end
    end
  end
  return nil
end

-- The keys every task transition may touch, with their types (the scripts that check the whole
-- layout: submit, claim, reap, requeue).
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
local function arm_wake_at(key)
  redis.call('DEL', key)
  redis.call('RPUSH', key, '1')
end

local function arm_wake()
  arm_wake_at(K.wake)
end
