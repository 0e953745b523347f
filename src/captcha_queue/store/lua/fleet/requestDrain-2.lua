--[[ requestDrain: ask one live worker process to drain (stop claiming, finish, unregister, exit).

KEYS[1] workers ZSET  worker id -> heartbeat deadline (ms, server time)
KEYS[2] drains HASH   worker id -> drain request JSON {reason, since_ms}

ARGV[1] worker id
ARGV[2] reason (checked by the caller: 1-500 characters)

The worker reads its request in the reply of its next heartbeat (heartbeatWorker); its unregistration
deletes it. A request already pending is kept as it is (the first reason and time stand).

Returns { OK, request JSON, 1 when this call wrote it else 0 }, { NOT_FOUND } when no live worker has
this id (nothing written), or an error reply (nothing written) when a key has another type
]]
--- @include "codes"
--- @include "util"

local bad_type = wrong_type({ { KEYS[1], 'zset' }, { KEYS[2], 'hash' } })
if bad_type then
  return redis.error_reply('WRONGTYPE ' .. bad_type)
end

local now = now_ms()
local deadline = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if deadline == nil or deadline <= now then
  return { NOT_FOUND }
end
local pending = redis.call('HGET', KEYS[2], ARGV[1])
if pending then
  return { OK, pending, 0 }
end
local request = cjson.encode({ reason = ARGV[2], since_ms = now })
redis.call('HSET', KEYS[2], ARGV[1], request)
return { OK, request, 1 }
