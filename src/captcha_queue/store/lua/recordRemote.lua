--- recordRemote: store the solver-side id of a claimed task and when it was submitted, under the lease.
---
--- A later claim of the same task (after a crash or a release) returns them, so the solve is resumed
--- rather than paid for twice.
---
--- KEYS: the standard layout (includes/keys.lua); reads and writes state.
--- ARGV: the standard prefix, then [A] task id, [A+1] lease token, [A+2] remote id.
--- Returns: {OK, remote submit ms} or {LEASE_LOST | CANCELLED | ALREADY_FINAL} or {WRONG_TYPE, message}.
--- @include "keys"
--- @include "codes"
--- @include "util"
--- @include "state"

local bad = wrong_type({ { K.state, 'hash' } })
if bad then
  return { WRONG_TYPE, bad }
end

local id, token, remote_id = ARGV[A], ARGV[A + 1], ARGV[A + 2]
local st = load_state(id)
local code = check_lease(st, token)
if code ~= OK then
  return { code }
end
local now = now_ms()
st.remote_id = remote_id
st.remote_ms = now
save_state(id, st)
return { OK, now }
