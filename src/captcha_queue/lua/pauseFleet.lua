--[[ pauseFleet: the account breaker pauses claiming on every worker of the namespace.

KEYS[1] paused HASH  reason, code, since_ms, until_ms (absent: until resumed or a probe succeeds)

ARGV[1] reason (readable, shown in stats and the CLI)
ARGV[2] code (the service's error code, e.g. ERROR_WRONG_USER_KEY, IP_BANNED)
ARGV[3] pause_ms: how long (IP_BANNED: 5 minutes), or '' for an open-ended pause

An active pause is kept as it is (its since_ms is what probes and lifts refer to), except that an
open-ended pause replaces a timed one. A pause whose until_ms has passed is replaced.

Returns { 1 if this call paused the fleet else 0, since_ms }
]]
--- @include "clock"

local now = now_ms()
local current = redis.call('HMGET', KEYS[1], 'since_ms', 'until_ms')
local since, until_ms = tonumber(current[1]), tonumber(current[2])
local active = redis.call('EXISTS', KEYS[1]) == 1 and ((not until_ms) or until_ms > now)
if active and not (until_ms and ARGV[3] == '') then
  return { 0, since or now }
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'code', ARGV[2], 'since_ms', now)
if ARGV[3] ~= '' then
  local ends = now + tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'until_ms', ends)
  -- The claim script ignores a pause past until_ms; the expiry only tidies the key away.
  redis.call('PEXPIREAT', KEYS[1], ends + 60000)
end
return { 1, now }
