--[[ renewSlots: extend the leases of the slots one worker holds (one call per renew period).

KEYS[1] slots ZSET, KEYS[2] slot limit HASH, KEYS[3] owners HASH (as in acquireSlots)

ARGV[1] lease_ms
ARGV[2..] pairs: holder, token

A slot still owned by the token is extended. A slot that expired meanwhile (the worker was stalled)
and that nobody else took is taken back if there is room. A slot now owned by another token, or one
that cannot be taken back, is reported lost.

Returns { effective, used, lost holder, ... }
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[1])

local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, #expired, 500 do
  local last = math.min(i + 499, #expired)
  redis.call('ZREM', KEYS[1], unpack(expired, i, last))
  redis.call('HDEL', KEYS[3], unpack(expired, i, last))
end

local effective = tonumber(redis.call('HGET', KEYS[2], 'effective')) or 0
local used = redis.call('ZCARD', KEYS[1])
local lost = {}
for i = 2, #ARGV, 2 do
  local holder, token = ARGV[i], ARGV[i + 1]
  local owner = redis.call('HGET', KEYS[3], holder)
  if owner == token then
    if not redis.call('ZSCORE', KEYS[1], holder) then used = used + 1 end
    redis.call('ZADD', KEYS[1], deadline, holder)
  elseif (not owner) and used < effective then
    used = used + 1
    redis.call('ZADD', KEYS[1], deadline, holder)
    redis.call('HSET', KEYS[3], holder, token)
  else
    lost[#lost + 1] = holder
  end
end

local reply = { effective, used }
for i = 1, #lost do reply[#reply + 1] = lost[i] end
return reply
