--[[ probePause: decide which worker probes its account while the account's pause holds.

KEYS[1] pause HASH   keys.account_paused(ref) (as in pauseFleet)

ARGV[1] probe interval ms: one probe per interval for every worker of the account

Returns { verdict, since_ms }:
  1  probe now (probe_ms was set to now: no other worker probes in this interval)
  0  paused, but another worker probed less than an interval ago
 -1  no pause, or it ended (until_ms passed)
 -2  an operator pause (code OPERATOR): only `captcha-queue resume` lifts it
or an error reply (nothing written) for a bad interval or a key of another type.
]]
--- @include "clock"

local every = tonumber(ARGV[1])
if not every or not (every > 0 and every < 1e15) then
  return redis.error_reply('probePause: the probe interval must be a positive number of ms')
end
local now = now_ms()
local p = redis.call('HMGET', KEYS[1], 'since_ms', 'until_ms', 'code', 'probe_ms')
local since, until_ms = tonumber(p[1]), tonumber(p[2])
if redis.call('EXISTS', KEYS[1]) == 0 or (until_ms and until_ms <= now) then
  return { -1, 0 }
end
if p[3] == 'OPERATOR' then
  return { -2, since or 0 }
end
local last = tonumber(p[4]) or since or 0
if now - last < every then
  return { 0, since or 0 }
end
redis.call('HSET', KEYS[1], 'probe_ms', now)
return { 1, since or 0 }
