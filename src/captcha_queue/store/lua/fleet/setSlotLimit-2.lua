--[[ setSlotLimit: set the configured fleet-wide limit N of one solver account (at run time too).

KEYS[1] slot limit HASH  configured, effective, changed_ms, decreased_ms
KEYS[2] slots ZSET       (read only: to report the slots in use)

ARGV[1] configured limit N (>= 1)

A new N also resets the effective limit to N (a limit lowered after "busy" answers is forgotten when an
operator or threadsinfo says what the account has); the same N again changes nothing.

Returns { configured, effective, used }
]]
--- @include "clock"

local now = now_ms()
local wanted = tonumber(ARGV[1])
local limit = redis.call('HMGET', KEYS[1], 'configured', 'effective')
local configured, effective = tonumber(limit[1]), tonumber(limit[2])
if configured ~= wanted or not effective then
  configured, effective = wanted, wanted
  redis.call('HSET', KEYS[1], 'configured', configured, 'effective', effective, 'changed_ms', now)
end
return { configured, effective, redis.call('ZCARD', KEYS[2]) }
