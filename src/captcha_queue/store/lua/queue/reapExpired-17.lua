--- reapExpired: the maintenance of the claim path, on its own, with a larger batch.
---
--- Any worker may call it periodically (cheap): expired leases back to their queue (or dead-lettered
--- "stalled"), due retries promoted, finished tasks and old dead letters deleted.
---
--- KEYS[1] queue_high LIST  task ids waiting at priority high, head first
--- KEYS[2] queue_normal LIST  ... at normal
--- KEYS[3] queue_low LIST  ... at low
--- KEYS[4] wake LIST  one marker blocked claimers BLPOP on
--- KEYS[5] tasks HASH  id -> Task JSON (immutable)
--- KEYS[6] state HASH  id -> state JSON (includes/state.lua)
--- KEYS[7] active ZSET  id -> lease deadline ms (Redis time)
--- KEYS[8] delayed ZSET  id -> ms a retry becomes claimable
--- KEYS[9] results HASH  id -> final Result JSON
--- KEYS[10] expiry ZSET  id -> ms a finished task's fields are deleted
--- KEYS[11] idem HASH  idempotency key -> task id
--- KEYS[12] dead HASH  id -> DeadLetter JSON
--- KEYS[13] dead_index ZSET  id -> ms it was dead-lettered
--- KEYS[14] counters HASH  counters (a fixed set of integer fields)
--- KEYS[15] events STREAM  final results (capped)
--- KEYS[16] webhooks HASH  task id -> webhook delivery JSON (written only for a task with a pingback)
--- KEYS[17] webhooks_due ZSET  task id -> ms of the delivery's next step
--- ARGV: the standard prefix, then [A] batch size per kind of maintenance.
--- Returns: {OK, tasks requeued or promoted, entries deleted} | {WRONG_TYPE, message}.
--- @include "args"
--- @include "codes"
--- @include "util"
--- @include "state"
--- @include "finish"
--- @include "reap"

local bad = wrong_type(core_checks())
if bad then
  return { WRONG_TYPE, bad }
end
local requeued, cleaned = reap_all(now_ms(), tonumber(ARGV[A]))
if requeued > 0 then
  arm_wake()
end
return { OK, requeued, cleaned }
