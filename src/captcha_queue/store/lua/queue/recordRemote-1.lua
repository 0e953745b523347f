--- recordRemote: store the solver-side id of a claimed task and when it was submitted, under the lease.
---
--- A later claim of the same task (after a crash or a release) returns them, so the solve is resumed
--- rather than paid for twice.
---
--- KEYS[1] state HASH  id -> state JSON (includes/state.lua)
--- ARGV: the standard prefix, then [A] task id, [A+1] lease token, [A+2] remote id.
--- Returns: {OK, remote submit ms} or {LEASE_LOST | CANCELLED | ALREADY_FINAL} or {WRONG_TYPE, message}.
--- @include "args"
--- @include "codes"
--- @include "util"
--- @include "state"
--- @include "fence"

-- The one key written is read first (HGET state): a key of another type fails there, before any write.
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
