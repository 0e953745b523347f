--[[ releaseSlots: give slots back, and adapt the effective limit (AIMD).

KEYS[1] slots ZSET, KEYS[2] slot limit HASH, KEYS[3] owners HASH (layout: includes/slots.lua)

ARGV[1] busy: how many times the service said it is full since the last release call (0: none);
        added to the limit hash's busy_answers count (the dashboard's capacity screen)
ARGV[2] successes: solves finished since the last release call
ARGV[3] decrease factor (e.g. 0.7): effective = max(1, floor(effective * factor)) on busy
ARGV[4] cooldown_ms: at most one decrease per cooldown, however many workers saw "busy" at once
ARGV[5] recover_ms: at most one increase per recover_ms
ARGV[6] recover_step: how much one increase adds, never above the configured limit
ARGV[7] hold_ms (as in acquireSlots)
ARGV[8..] triples: holder, token, how. Only a slot still owned by that token is touched (fencing).
          how '0': the solve is over (answered, refused, never sent): the slot is freed.
          how '1': the holder gives the task up while its solve may still run at the service (lease
          lost, cancelled, shutdown): the slot becomes a ghost, counted until the solve must be over
          or adopted by the task's next owner. A slot another claim owns now stays with it; this
          solve is counted as a ghost unless that claim resumed it or it is counted already.
          how '2': as '1', because Redis lost its data (the caller saw the data set's epoch change):
          a slot Redis no longer has is counted again, as a ghost from now.

Returns { effective, used }
]]
--- @include "slots"

local now = now_ms()
local hold_ms = tonumber(ARGV[7])
reap_slots(now, hold_ms)

for i = 8, #ARGV, 3 do
  local holder, token, how = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local owner = redis.call('HGET', OWNERS, holder)
  if owner == token then
    if how ~= '0' then
      ghost_live(holder, token, hold_ms, now)
    else
      drop_live(holder)
    end
  elseif how == '2' and not owner and not redis.call('ZSCORE', SLOTS, ghost_member(holder, token)) then
    add_ghost(holder, token, now, hold_ms, now)
  elseif how ~= '0' and owner then
    keep_counted(holder, token, hold_ms, now)
  end
end

local limit = redis.call('HMGET', LIMIT, 'configured', 'effective', 'changed_ms', 'decreased_ms')
local configured, effective = tonumber(limit[1]), tonumber(limit[2])
if configured and effective then
  local changed_ms, decreased_ms = tonumber(limit[3]) or 0, tonumber(limit[4]) or 0
  if tonumber(ARGV[1]) > 0 then
    if now - decreased_ms >= tonumber(ARGV[4]) then
      local lowered = math.max(1, math.floor(effective * tonumber(ARGV[3])))
      if lowered < effective then
        effective = lowered
        redis.call('HSET', LIMIT, 'effective', effective, 'changed_ms', now, 'decreased_ms', now)
      end
    end
  elseif tonumber(ARGV[2]) > 0 and effective < configured and now - changed_ms >= tonumber(ARGV[5]) then
    effective = math.min(configured, effective + tonumber(ARGV[6]))
    redis.call('HSET', LIMIT, 'effective', effective, 'changed_ms', now)
  end
end

if tonumber(ARGV[1]) > 0 then
  redis.call('HINCRBY', LIMIT, 'busy_answers', tonumber(ARGV[1]))
end

return { effective or 0, redis.call('ZCARD', SLOTS) }
