--[[ pauseFleet: pause claiming: the operator's pause of the namespace, or the account breaker's pause
of one solver account (every worker of that account stops). One script for both (AdminAPI.pause).

KEYS[1] pause HASH   reason, code, since_ms, until_ms (absent: until resumed or a probe succeeds), and
                     who set it (ARGV[6..]): keys.paused (the namespace's) or keys.account_paused(ref)
KEYS[2] index SET    the refs of accounts that have a pause (keys.paused_accounts); written only with
                     an index member (ARGV[4])

ARGV[1] reason (readable, shown in stats and the CLI)
ARGV[2] code (OPERATOR, or the service's error code, e.g. ERROR_WRONG_USER_KEY, IP_BANNED)
ARGV[3] pause_ms: how long (IP_BANNED: 5 minutes), or '' for an open-ended pause
ARGV[4] the member to add to KEYS[2] (the account's ref), '' for the namespace's pause
ARGV[5] 'replace': replace any pause in place (the operator's); 'keep': keep an active pause as it
        is (its since_ms is what probes and lifts refer to), except that an open-ended pause replaces
        a timed one
ARGV[6..] field, value pairs stored with a new pause (worker, account, key: never the API key)

A pause whose until_ms has passed is always replaced. A timed pause's key expires at its until_ms
(the claim script and the readers ignore it past until_ms anyway; the expiry only tidies it away).

Returns { 1 if this call wrote the pause else 0, since_ms of the pause in force }, or an error reply
(nothing written) for bad arguments or a key of another type.
]]
--- @include "util"

local pause_ms = ARGV[3] == '' or tonumber(ARGV[3])
if not pause_ms or (pause_ms ~= true and not (pause_ms > 0 and pause_ms < 1e15)) then
  return redis.error_reply('pauseFleet: pause_ms must be empty or a positive number')
end
if #ARGV < 5 or (#ARGV - 5) % 2 ~= 0 or (ARGV[5] ~= 'replace' and ARGV[5] ~= 'keep') then
  return redis.error_reply('pauseFleet: expected reason, code, pause_ms, index member, mode, field/value pairs')
end
if ARGV[1] == '' or ARGV[2] == '' then
  return redis.error_reply('pauseFleet: the reason and the code must not be empty')
end
-- Checked before the first write: Redis keeps the writes made before a command fails.
local bad_type = wrong_type({ { KEYS[1], 'hash' }, { KEYS[2], 'set' } })
if bad_type then
  return redis.error_reply('WRONGTYPE ' .. bad_type)
end

local now = now_ms()
local current = redis.call('HMGET', KEYS[1], 'since_ms', 'until_ms')
local since, until_ms = tonumber(current[1]), tonumber(current[2])
local active = redis.call('EXISTS', KEYS[1]) == 1 and ((not until_ms) or until_ms > now)
if active and ARGV[5] == 'keep' and not (until_ms and ARGV[3] == '') then
  return { 0, since or now }
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'code', ARGV[2], 'since_ms', now)
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if ARGV[4] ~= '' then
  redis.call('SADD', KEYS[2], ARGV[4])
end
if ARGV[3] ~= '' then
  local ends = now + pause_ms
  redis.call('HSET', KEYS[1], 'until_ms', ends)
  redis.call('PEXPIREAT', KEYS[1], ends)
end
return { 1, now }
