--[[ liftPause: an account probe succeeded: lift the pause it probed, and wake blocked claimers.

KEYS[1] paused HASH (as in pauseFleet)
KEYS[2] wake LIST (the marker blocked claimers wait on)

ARGV[1] since_ms of the pause that was probed: a newer pause (or an operator's) is left alone

Returns 1 if lifted, else 0
]]
local p = redis.call('HMGET', KEYS[1], 'since_ms', 'code')
if p[1] ~= ARGV[1] or p[2] == 'OPERATOR' then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('LPUSH', KEYS[2], '1')
redis.call('LTRIM', KEYS[2], 0, 0)
return 1
