--[[ renewSlots: extend the leases of the slots one worker holds (one call per renew period).

KEYS[1] slots ZSET, KEYS[2] slot limit HASH, KEYS[3] owners HASH (layout: includes/slots.lua)

ARGV[1] lease_ms
ARGV[2] hold_ms (as in acquireSlots)
ARGV[3..] pairs: holder, token

Every holder named here has a solve running (or a submit in progress) at the service, so its slot is
never given up by a renewal. A slot still owned by the token is extended. A slot that turned into a
ghost of this token (the worker was stalled past the lease) is taken back live. A slot that is gone
altogether (Redis lost it: restarted empty, or an fsync window) is registered again, even over the
limit, and no new slot is granted for one lease (rebuild_until_ms) so the other workers' solves are
re-registered too. Only a slot that another claim of the task now owns is reported lost: that owner
resumed this solve, or this solve is counted as a ghost (left so by that owner's fresh submit, or, when
Redis lost this slot before that owner took a fresh one, from now: both solves run).

Returns { effective, used, lost holder, ... }
]]
--- @include "slots"

local now = now_ms()
local lease_ms, hold_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local deadline = now + lease_ms
reap_slots(now, hold_ms)

local lost = {}
local missing = 0
for i = 3, #ARGV, 2 do
  local holder, token = ARGV[i], ARGV[i + 1]
  local owner = redis.call('HGET', OWNERS, holder)
  if owner == token then
    redis.call('ZADD', SLOTS, deadline, holder)
  elseif owner then
    lost[#lost + 1] = holder
    keep_counted(holder, token, hold_ms, now)
  else
    local since
    if redis.call('HGET', OWNERS, '#' .. holder) == ghost_member(holder, token) then
      since = take_ghost(holder, hold_ms)
    end
    if not since then
      since = now
      missing = missing + 1
    end
    set_live(holder, token, deadline, since)
  end
end

if missing > 0 then
  local until_ms = tonumber(redis.call('HGET', LIMIT, 'rebuild_until_ms')) or 0
  if until_ms < deadline then
    redis.call('HSET', LIMIT, 'rebuild_until_ms', deadline)
  end
end

local reply = { tonumber(redis.call('HGET', LIMIT, 'effective')) or 0, redis.call('ZCARD', SLOTS) }
for i = 1, #lost do reply[#reply + 1] = lost[i] end
return reply
