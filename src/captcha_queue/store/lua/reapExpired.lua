--- reapExpired: the maintenance of the claim path, on its own, with a larger batch.
---
--- Any worker may call it periodically (cheap): expired leases back to their queue (or dead-lettered
--- "stalled"), due retries promoted, finished tasks and old dead letters deleted.
---
--- KEYS: the standard layout (includes/keys.lua).
--- ARGV: the standard prefix, then [A] batch size per kind of maintenance.
--- Returns: {OK, tasks requeued or promoted, entries deleted} | {WRONG_TYPE, message}.
--- @include "keys"
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
