--[[ releaseSlots: give slots back, and adapt the effective limit (AIMD).

KEYS[1] slots ZSET, KEYS[2] slot limit HASH, KEYS[3] owners HASH (as in acquireSlots)

ARGV[1] busy: 1 if the service said it is full since the last release call, else 0
ARGV[2] successes: solves finished since the last release call
ARGV[3] decrease factor (e.g. 0.7): effective = max(1, floor(effective * factor)) on busy
ARGV[4] cooldown_ms: at most one decrease per cooldown, however many workers saw "busy" at once
ARGV[5] recover_ms: at most one increase per recover_ms
ARGV[6] recover_step: how much one increase adds, never above the configured limit
ARGV[7..] pairs: holder, token; only a slot still owned by that token is removed (fencing)

Returns { effective, used }
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

for i = 7, #ARGV, 2 do
  local holder, token = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', KEYS[3], holder) == token then
    redis.call('ZREM', KEYS[1], holder)
    redis.call('HDEL', KEYS[3], holder)
  end
end

local limit = redis.call('HMGET', KEYS[2], 'configured', 'effective', 'changed_ms', 'decreased_ms')
local configured, effective = tonumber(limit[1]), tonumber(limit[2])
if configured and effective then
  local changed_ms, decreased_ms = tonumber(limit[3]) or 0, tonumber(limit[4]) or 0
  if ARGV[1] == '1' then
    if now - decreased_ms >= tonumber(ARGV[4]) then
      local lowered = math.max(1, math.floor(effective * tonumber(ARGV[3])))
      if lowered < effective then
        effective = lowered
        redis.call('HSET', KEYS[2], 'effective', effective, 'changed_ms', now, 'decreased_ms', now)
      end
    end
  elseif tonumber(ARGV[2]) > 0 and effective < configured and now - changed_ms >= tonumber(ARGV[5]) then
    effective = math.min(configured, effective + tonumber(ARGV[6]))
    redis.call('HSET', KEYS[2], 'effective', effective, 'changed_ms', now)
  end
end

return { effective or 0, redis.call('ZCARD', KEYS[1]) }
