--[[ acquireSlots: take solver slots for waiting tasks (fleet-wide counting semaphore with leases).

KEYS[1] slots ZSET, KEYS[2] slot limit HASH, KEYS[3] owners HASH (layout: includes/slots.lua)

ARGV[1] lease_ms
ARGV[2] default limit, used only when the limit hash is missing (Redis lost its data: see below)
ARGV[3] hold_ms: how long a solve left running at the service keeps counting (its ghost)
ARGV[4..] triples: holder (task id), token (its claim's lease token), resume ('1': the holder resumes
          the remote id its task already has, so its solve is already counted; '0': a new submit)

Expired live slots become ghosts and expired ghosts go first (includes/slots.lua). A resuming holder
adopts its task's live slot or newest ghost without counting against the free room (the same solve).
A holder about to submit anew turns a live slot its task still has (a previous owner's solve, which
the service keeps running) into a ghost, then is granted in order while used < effective.

The limit hash is written when the first worker starts (setSlotLimit). Missing here, Redis lost its
data with every slot in it: the hash is written again with the default limit and, for one lease, no
new slot is granted (rebuild_until_ms), so the solves still running are re-registered by their
workers' renewals (renewSlots) before anyone counts on free room.

Returns { effective, used, granted holder, ... }
]]
--- @include "slots"

local now = now_ms()
local lease_ms, hold_ms = tonumber(ARGV[1]), tonumber(ARGV[3])
reap_slots(now, hold_ms)

local limit = redis.call('HMGET', LIMIT, 'effective', 'rebuild_until_ms')
local effective, rebuild_until = tonumber(limit[1]), tonumber(limit[2]) or 0
if not effective then
  effective = tonumber(ARGV[2])
  rebuild_until = now + lease_ms
  redis.call('HSET', LIMIT, 'configured', effective, 'effective', effective, 'changed_ms', now,
    'rebuild_until_ms', rebuild_until)
end
local rebuilding = now < rebuild_until

local used = redis.call('ZCARD', SLOTS)
local granted = {}
for i = 4, #ARGV, 3 do
  local holder, token, resume = ARGV[i], ARGV[i + 1], ARGV[i + 2] == '1'
  local owner = redis.call('HGET', OWNERS, holder)
  local live = redis.call('ZSCORE', SLOTS, holder)
  local grant = false
  if live and (owner == token or resume) then
    redis.call('ZADD', SLOTS, now + lease_ms, holder)
    redis.call('HSET', OWNERS, holder, token)
    if owner and owner ~= token then
      note_adopted(holder, owner)
    end
    grant = true
  else
    local since, left_by = nil, nil
    if resume then
      since, left_by = take_ghost(holder, hold_ms)
    end
    if since then
      set_live(holder, token, now + lease_ms, since)
      if left_by and left_by ~= token then
        note_adopted(holder, left_by)
      end
      grant = true
    else
      if live and not ghost_live(holder, owner, hold_ms, now) then
        used = used - 1
      end
      if not rebuilding and used < effective then
        used = used + 1
        set_live(holder, token, now + lease_ms, now)
        grant = true
      end
    end
  end
  if grant then
    granted[#granted + 1] = holder
  end
end

local reply = { effective, used }
for i = 1, #granted do reply[#reply + 1] = granted[i] end
return reply
