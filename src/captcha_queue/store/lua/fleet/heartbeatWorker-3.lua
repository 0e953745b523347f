--[[ heartbeatWorker: register a worker process, or keep its registration alive; answer its drain request.

KEYS[1] workers ZSET      worker id -> heartbeat deadline (ms, server time)
KEYS[2] worker info HASH  worker id -> registration JSON
KEYS[3] drains HASH       worker id -> drain request JSON {reason, since_ms} (written by requestDrain)

ARGV[1] worker id
ARGV[2] ttl_ms: the registration lapses unless renewed within this
ARGV[3] registration JSON (host, pid, started, in flight, version, ...), or '' to drop the worker
        (and its drain request)
ARGV[4] forget_ms: registrations that lapsed this long ago are deleted with their drain requests
        (bounded: 100 per call)

Returns { OK, number of live workers, the worker's drain request JSON or '' }, or an error reply
(nothing written) when a key has another type
]]
--- @include "codes"
--- @include "util"

-- Checked before the first write: Redis keeps the writes made before a command fails.
local bad_type = wrong_type({ { KEYS[1], 'zset' }, { KEYS[2], 'hash' }, { KEYS[3], 'hash' } })
if bad_type then
  return redis.error_reply('WRONGTYPE ' .. bad_type)
end

local now = now_ms()
local drain = ''
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  drain = redis.call('HGET', KEYS[3], ARGV[1]) or ''
end
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[4]), 'LIMIT', 0, 100)
if #stale > 0 then
  redis.call('ZREM', KEYS[1], unpack(stale))
  redis.call('HDEL', KEYS[2], unpack(stale))
  redis.call('HDEL', KEYS[3], unpack(stale))
end
return { OK, redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf'), drain }
