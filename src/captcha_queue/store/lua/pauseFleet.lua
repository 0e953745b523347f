--[[ pauseFleet: the account breaker pauses claiming on every worker of one solver account.

KEYS[1] paused HASH  reason, code, since_ms, until_ms (absent: until resumed or a probe succeeds),
        and who set it (ARGV[5..]); the account's (keys.account_paused), or the namespace's
KEYS[2] (optional) SET indexing the accounts that have a pause (keys.paused_accounts)

ARGV[1] reason (readable, shown in stats and the CLI)
ARGV[2] code (the service's error code, e.g. ERROR_WRONG_USER_KEY, IP_BANNED)
ARGV[3] pause_ms: how long (IP_BANNED: 5 minutes), or '' for an open-ended pause
ARGV[4] the member to add to KEYS[2] (the account's ref), '' without KEYS[2]
ARGV[5..] field, value pairs stored with a new pause (worker, account, key: never the API key)

An active pause is kept as it is (its since_ms is what probes and lifts refer to), except that an
open-ended pause replaces a timed one. A pause whose until_ms has passed is replaced.

Returns { 1 if this call paused the fleet else 0, since_ms }
]]
--- @include "clock"

local pause_ms = ARGV[3] == '' or tonumber(ARGV[3])
if not pause_ms or (pause_ms ~= true and not (pause_ms > 0 and pause_ms < 1e15)) then
  return redis.error_reply('pauseFleet: pause_ms must be empty or a positive number')
end
if #ARGV < 4 or (#ARGV - 4) % 2 ~= 0 or ((KEYS[2] ~= nil) ~= (ARGV[4] ~= '')) then
  return redis.error_reply('pauseFleet: expected reason, code, pause_ms, index member, field/value pairs')
end

local now = now_ms()
local current = redis.call('HMGET', KEYS[1], 'since_ms', 'until_ms')
local since, until_ms = tonumber(current[1]), tonumber(current[2])
local active = redis.call('EXISTS', KEYS[1]) == 1 and ((not until_ms) or until_ms > now)
if active and not (until_ms and ARGV[3] == '') then
  return { 0, since or now }
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'code', ARGV[2], 'since_ms', now)
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if KEYS[2] then
  redis.call('SADD', KEYS[2], ARGV[4])
end
if ARGV[3] ~= '' then
  local ends = now + pause_ms
  redis.call('HSET', KEYS[1], 'until_ms', ends)
  -- The claim script ignores a pause past until_ms; the expiry only tidies the key away.
  redis.call('PEXPIREAT', KEYS[1], ends + 60000)
end
return { 1, now }
