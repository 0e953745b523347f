--- claimDeliveries: lease the webhook deliveries that are due, so exactly one deliverer sends each
--- at a time (several deliverer processes may run). A lease that lapses (its deliverer died) makes
--- the delivery due again: another deliverer sends it (at least once).
---
--- On the way, bounded by `limit`: delivered and failed records past their keep time are deleted,
--- and a pending delivery older than max age is given up (failed, reason "expired").
---
--- KEYS[1] webhooks HASH  task id -> delivery JSON (includes/outbox.lua)
--- KEYS[2] webhooks_due ZSET  task id -> ms of its next step (next try, lease deadline, deletion)
--- ARGV[1] limit (entries looked at)   ARGV[2] lease_ms   ARGV[3] max_age_ms   ARGV[4] keep_ms
--- ARGV[5] lease token (random, per call)   ARGV[6] deliverer id
--- Returns: {OK, now ms, entries handled, id, delivery JSON, id, delivery JSON, ...} (the leased ones)
---          | {WRONG_TYPE, message}; an error reply (nothing written) for malformed arguments.
--- @include "codes"
--- @include "util"
--- @include "outbox"

local bad = wrong_type({ { K.webhooks, 'hash' }, { K.webhooks_due, 'zset' } })
if bad then
  return { WRONG_TYPE, bad }
end
local limit, lease_ms = arg_ms(ARGV[1]), arg_ms(ARGV[2])
local max_age_ms, keep_ms = arg_ms(ARGV[3]), arg_ms(ARGV[4])
local token, deliverer = ARGV[5], ARGV[6]
if not (limit and lease_ms and max_age_ms and keep_ms) or limit < 1 or not token or token == ''
    or not deliverer then
  return redis.error_reply('ERR claimDeliveries: malformed arguments')
end

local now = now_ms()
local reply = { OK, now, 0 }
local ids = redis.call('ZRANGEBYSCORE', K.webhooks_due, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local rec, problem = load_delivery(id)
  if rec == nil then
    redis.call('ZREM', K.webhooks_due, id)
  elseif rec == false then
    fail_unusable(id, problem, now, keep_ms)
  elseif rec.state ~= 'pending' then
    redis.call('HDEL', K.webhooks, id)
    redis.call('ZREM', K.webhooks_due, id)
  elseif now >= rec.since_ms + max_age_ms then
    give_up(id, rec, now, keep_ms, expired_reason(max_age_ms))
  else
    rec.attempts = rec.attempts + 1
    rec.lease = token
    rec.leased_until = now + lease_ms
    rec.deliverer = deliverer
    rec.next_ms = nil
    save_delivery(id, rec)
    redis.call('ZADD', K.webhooks_due, now + lease_ms, id)
    reply[#reply + 1] = id
    reply[#reply + 1] = cjson.encode(rec)
  end
end
reply[3] = #ids
return reply
