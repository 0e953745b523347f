--[[ acquireSlots: take solver slots for waiting tasks (fleet-wide counting semaphore with leases).

KEYS[1] slots ZSET       holder -> lease deadline (ms, server time)
KEYS[2] slot limit HASH  configured, effective, changed_ms, decreased_ms
KEYS[3] owners HASH      holder -> lease token of the claim that holds the slot

ARGV[1] lease_ms
ARGV[2] default limit, used only when the limit hash is missing (first start, or Redis lost its data)
ARGV[3..] pairs: holder (task id), token (its claim's lease token)

Expired slots (holders that died) are reclaimed first. A holder that is already in the set (the same
task reclaimed after a crash: its remote solve may still run) is adopted without counting against the
free room. Others are granted in order while used < effective.

Returns { effective, used, granted holder, ... }
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_ms = tonumber(ARGV[1])

local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, #expired, 500 do
  local last = math.min(i + 499, #expired)
  redis.call('ZREM', KEYS[1], unpack(expired, i, last))
  redis.call('HDEL', KEYS[3], unpack(expired, i, last))
end

local effective = tonumber(redis.call('HGET', KEYS[2], 'effective'))
if not effective then
  effective = tonumber(ARGV[2])
  redis.call('HSET', KEYS[2], 'configured', effective, 'effective', effective, 'changed_ms', now)
end

local used = redis.call('ZCARD', KEYS[1])
local granted = {}
for i = 3, #ARGV, 2 do
  local holder, token = ARGV[i], ARGV[i + 1]
  local adopt = redis.call('ZSCORE', KEYS[1], holder)
  if adopt or used < effective then
    if not adopt then used = used + 1 end
    redis.call('ZADD', KEYS[1], now + lease_ms, holder)
    redis.call('HSET', KEYS[3], holder, token)
    granted[#granted + 1] = holder
  end
end

local reply = { effective, used }
for i = 1, #granted do reply[#reply + 1] = granted[i] end
return reply
