--[[ liftPause: lift one pause and wake blocked claimers: `captcha-queue resume` (AdminAPI.resume),
and an account probe that succeeded (the pause it probed only).

KEYS[1] pause HASH   keys.paused or keys.account_paused(ref) (as in pauseFleet)
KEYS[2] index SET    keys.paused_accounts (as in pauseFleet); ARGV[2] is removed from it
KEYS[3] wake LIST    the marker blocked claimers wait on, re-armed as every queue script does
                     (arm_wake in includes/util.lua: DEL, then RPUSH one marker)

ARGV[1] since_ms of the pause to lift ('' = whatever pause is there: the operator's resume); with a
        since_ms, a newer pause, or an operator's (code OPERATOR), is left alone
ARGV[2] the member to remove from KEYS[2] (the account's ref), '' for the namespace's pause

Returns the lifted pause's fields as stored ({field, value, ...}; empty: nothing lifted), or an error
reply (nothing written) for bad arguments or a key of another type.
]]
--- @include "util"

if #ARGV ~= 2 then
  return redis.error_reply('liftPause: expected since_ms, index member')
end
-- Checked before the first write (a wake key of another type is replaced, as arm_wake does).
local bad_type = wrong_type({ { KEYS[1], 'hash' }, { KEYS[2], 'set' } })
if bad_type then
  return redis.error_reply('WRONGTYPE ' .. bad_type)
end

if ARGV[1] ~= '' then
  local p = redis.call('HMGET', KEYS[1], 'since_ms', 'code')
  if p[1] ~= ARGV[1] or p[2] == 'OPERATOR' then
    return {}
  end
end
local fields = redis.call('HGETALL', KEYS[1])
if ARGV[2] ~= '' then
  redis.call('SREM', KEYS[2], ARGV[2]) -- also a stale member whose timed pause expired
end
if #fields == 0 then
  return {}
end
redis.call('DEL', KEYS[1])
arm_wake_at(KEYS[3])
return fields
