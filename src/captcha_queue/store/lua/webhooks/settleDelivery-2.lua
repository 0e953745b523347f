--- settleDelivery: record how one send of a leased delivery went.
---
--- Fenced by the lease token claimDeliveries gave: a deliverer whose lease lapsed (another one has
--- the delivery now) writes nothing. "delivered": kept visible for keep_ms, then deleted. "retry":
--- due again after delay_ms, unless that would pass its max age (then failed, reason "expired").
--- "failed": given up at once (a target refused at delivery time), with the reason.
---
--- KEYS[1] webhooks HASH  task id -> delivery JSON (includes/outbox.lua)
--- KEYS[2] webhooks_due ZSET  task id -> ms of its next step (next try, lease deadline, deletion)
--- ARGV[1] task id   ARGV[2] lease token   ARGV[3] outcome: delivered | retry | failed
--- ARGV[4] delay_ms (retry)   ARGV[5] max_age_ms   ARGV[6] keep_ms
--- ARGV[7] HTTP status ("" = no answer)   ARGV[8] error ("" = none)
--- Returns: {OK, state} | {NOT_FOUND} | {LEASE_LOST} | {WRONG_TYPE, message}; an error reply
---          (nothing written) for malformed arguments.
--- @include "codes"
--- @include "util"
--- @include "outbox"

local bad = wrong_type({ { K.webhooks, 'hash' }, { K.webhooks_due, 'zset' } })
if bad then
  return { WRONG_TYPE, bad }
end
local id, token, outcome = ARGV[1], ARGV[2], ARGV[3]
local delay_ms, max_age_ms, keep_ms = arg_ms(ARGV[4]), arg_ms(ARGV[5]), arg_ms(ARGV[6])
local status, err = ARGV[7], ARGV[8]
local OUTCOMES = { delivered = true, retry = true, failed = true }
if not (delay_ms and max_age_ms and keep_ms) or not OUTCOMES[outcome] or not token or token == ''
    or not err or (status ~= '' and not arg_ms(status)) then
  return redis.error_reply('ERR settleDelivery: malformed arguments')
end
local rec = load_delivery(id)
if not rec then
  return { NOT_FOUND }
end
if rec.lease ~= token then
  return { LEASE_LOST }
end

local now = now_ms()
rec.lease = nil
rec.leased_until = nil
rec.last_try_ms = now
rec.last_status = status ~= '' and tonumber(status) or nil
if err ~= '' then
  rec.last_error = err
end
if outcome == 'delivered' then
  rec.state = 'delivered'
  rec.done_ms = now
  save_delivery(id, rec)
  redis.call('ZADD', K.webhooks_due, now + keep_ms, id)
elseif outcome == 'failed' then
  give_up(id, rec, now, keep_ms, err ~= '' and err or 'refused')
elseif now + delay_ms >= rec.since_ms + max_age_ms then
  give_up(id, rec, now, keep_ms, expired_reason(max_age_ms))
else
  rec.next_ms = now + delay_ms
  save_delivery(id, rec)
  redis.call('ZADD', K.webhooks_due, rec.next_ms, id)
end
return { OK, rec.state }
