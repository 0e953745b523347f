--- expireTask: finish a claimed task as "expired" (its deadline passed before it reached the solver).
---
--- KEYS: the standard layout (includes/keys.lua).
--- ARGV: the standard prefix, then [A] task id, [A+1] lease token.
--- Returns: {OK, result JSON} | {ALREADY_FINAL, stored result JSON | nil} | {LEASE_LOST} | {CANCELLED}
---          | {WRONG_TYPE, message}.
--- @include "keys"
--- @include "codes"
--- @include "util"
--- @include "state"
--- @include "finish"

local bad = wrong_type(core_checks())
if bad then
  return { WRONG_TYPE, bad }
end

local id, token = ARGV[A], ARGV[A + 1]
local st, refusal = state_for_finish(id, token)
if refusal then
  return refusal
end
local json = finish(id, st, 'expired', now_ms(), {
  error_code = 'EXPIRED', error_message = 'the task expired before it reached the solver',
})
return { OK, json }
