--- retryDelivery: an operator sends a delivery again (`captcha-queue webhooks retry ID`): pending,
--- due now, its max age counted from now. Attempts are kept; a send in flight loses its lease (its
--- result is not recorded; the receiver may get both: deliveries are at least once).
---
--- KEYS[1] webhooks HASH  task id -> delivery JSON (includes/outbox.lua)
--- KEYS[2] webhooks_due ZSET  task id -> ms of its next step (next try, lease deadline, deletion)
--- ARGV[1] task id
--- Returns: {OK} | {NOT_FOUND} (no delivery, or an unusable record) | {WRONG_TYPE, message}.
--- @include "codes"
--- @include "util"
--- @include "outbox"

local bad = wrong_type({ { K.webhooks, 'hash' }, { K.webhooks_due, 'zset' } })
if bad then
  return { WRONG_TYPE, bad }
end
local id = ARGV[1]
local rec = load_delivery(id)
if not rec or rec.url == '' then
  return { NOT_FOUND }
end
local now = now_ms()
rec.state = 'pending'
rec.since_ms = now
rec.next_ms = now
rec.lease = nil
rec.leased_until = nil
rec.reason = nil
rec.done_ms = nil
save_delivery(id, rec)
redis.call('ZADD', K.webhooks_due, now, id)
return { OK }
