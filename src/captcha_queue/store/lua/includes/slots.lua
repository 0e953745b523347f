-- Solver slots of one account: a counting semaphore in which every member stands for one solve that
-- may be running at the service. The slot scripts share this layout (not the queue's):
--   KEYS[1] slots ZSET   live slot: <task id> -> lease deadline (ms, server time)
--                        ghost:     '#' .. <task id> .. '#' .. <lease token> -> when that solve must be over
--   KEYS[2] limit HASH   configured, effective, changed_ms, decreased_ms, rebuild_until_ms
--   KEYS[3] owners HASH  <task id> -> lease token of the claim holding the live slot
--                        '@' .. <task id> -> when the live slot's solve may have started (ms)
--                        '#' .. <task id> -> the task's newest ghost member
--                        '^' .. <task id> -> the lease token whose solve the live slot's owner adopted
--                                            (resumed by its remote id): that solve is this slot's
--
-- A ghost is the solve a holder left running at the service: its worker was killed or stalled past the
-- slot lease, lost the task's lease, or gave the task up. The service keeps solving it, so it keeps
-- counting against N until it must be over (since + hold_ms), unless the task's next owner, resuming
-- the same remote id, adopts it. Nobody ever frees a slot whose solve may still be running.

--- @include "clock"

local SLOTS, LIMIT, OWNERS = KEYS[1], KEYS[2], KEYS[3]

local function ghost_member(holder, token)
  return '#' .. holder .. '#' .. token
end

local function set_live(holder, token, deadline, since)
  redis.call('ZADD', SLOTS, deadline, holder)
  redis.call('HSET', OWNERS, holder, token, '@' .. holder, since)
  redis.call('HDEL', OWNERS, '^' .. holder)
end

local function drop_live(holder)
  redis.call('ZREM', SLOTS, holder)
  redis.call('HDEL', OWNERS, holder, '@' .. holder, '^' .. holder)
end

-- The live slot's owner resumed the solve of ``token`` (it adopted that claim's slot or ghost).
local function note_adopted(holder, token)
  redis.call('HSET', OWNERS, '^' .. holder, token)
end

local function since_of(holder, now)
  return tonumber(redis.call('HGET', OWNERS, '@' .. holder)) or now
end

-- Count a solve as a ghost until since + hold_ms. Returns true if it still counts.
local function add_ghost(holder, token, since, hold_ms, now)
  local until_ms = since + hold_ms
  if until_ms <= now then
    return false
  end
  local member = ghost_member(holder, token)
  redis.call('ZADD', SLOTS, 'GT', until_ms, member) -- GT still adds a new member
  redis.call('HSET', OWNERS, '#' .. holder, member)
  return true
end

-- A live slot's solve outlives its holder: the live slot becomes a ghost. Returns true if it counts.
local function ghost_live(holder, token, hold_ms, now)
  local since = since_of(holder, now)
  drop_live(holder)
  return add_ghost(holder, token or '?', since, hold_ms, now)
end

-- Adopt the task's newest ghost (the same solve, resumed by its remote id). Returns its since and the
-- lease token of the claim that left it, or nil.
local function take_ghost(holder, hold_ms)
  local member = redis.call('HGET', OWNERS, '#' .. holder)
  if not member then
    return nil
  end
  redis.call('HDEL', OWNERS, '#' .. holder)
  local until_ms = tonumber(redis.call('ZSCORE', SLOTS, member))
  if not until_ms then
    return nil
  end
  redis.call('ZREM', SLOTS, member)
  return until_ms - hold_ms, string.match(member, '#([^#]*)$')
end

-- A claim (holder, token) whose solve runs on at the service no longer owns the task's live slot:
-- another claim does. Unless that owner resumed this very solve, or it is counted as a ghost
-- already, it is counted as a ghost from now. (A failover without WAIT lost the claim and its slot;
-- the task's next owner submitted anew and took a fresh slot before this owner re-registered: two
-- solves run, and both count.) Returns true if a ghost was added.
local function keep_counted(holder, token, hold_ms, now)
  if redis.call('HGET', OWNERS, '^' .. holder) == token then
    return false
  end
  if redis.call('ZSCORE', SLOTS, ghost_member(holder, token)) then
    return false
  end
  return add_ghost(holder, token, now, hold_ms, now)
end

-- Expired members: a live slot whose holder stopped renewing becomes a ghost; a ghost past its time goes.
local function reap_slots(now, hold_ms)
  local expired = redis.call('ZRANGEBYSCORE', SLOTS, '-inf', now, 'LIMIT', 0, 1000)
  for _, member in ipairs(expired) do
    if string.sub(member, 1, 1) == '#' then
      redis.call('ZREM', SLOTS, member)
      local holder = string.match(member, '^#(.*)#[^#]*$')
      if holder and redis.call('HGET', OWNERS, '#' .. holder) == member then
        redis.call('HDEL', OWNERS, '#' .. holder)
      end
    else
      ghost_live(member, redis.call('HGET', OWNERS, member), hold_ms, now)
    end
  end
end
