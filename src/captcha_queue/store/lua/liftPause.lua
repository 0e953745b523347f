--[[ liftPause: an account probe succeeded: lift the pause it probed, and wake blocked claimers.

KEYS[1] paused HASH (as in pauseFleet)
KEYS[2] wake LIST (the marker blocked claimers wait on)
KEYS[3] (optional) SET indexing paused accounts (as in pauseFleet)

ARGV[1] since_ms of the pause that was probed: a newer pause (or an operator's) is left alone
ARGV[2] (with KEYS[3]) the member to remove from it

Returns 1 if lifted, else 0
]]
if KEYS[3] and not ARGV[2] then
  return redis.error_reply('liftPause: the index member is missing')
end
local p = redis.call('HMGET', KEYS[1], 'since_ms', 'code')
if p[1] ~= ARGV[1] or p[2] == 'OPERATOR' then
  return 0
end
redis.call('DEL', KEYS[1])
if KEYS[3] then
  redis.call('SREM', KEYS[3], ARGV[2])
end
redis.call('LPUSH', KEYS[2], '1')
redis.call('LTRIM', KEYS[2], 0, 0)
return 1
