--- quarantineTask: dead-letter a claimed task whose stored Task JSON the client could not read.
---
--- KEYS: the standard layout (includes/keys.lua).
--- ARGV: the standard prefix, then [A] task id, [A+1] lease token, [A+2] reason.
--- Returns: {OK, result JSON} | {LEASE_LOST} | {CANCELLED} | {ALREADY_FINAL} | {WRONG_TYPE, message}.
--- @include "keys"
--- @include "codes"
--- @include "util"
--- @include "state"
--- @include "finish"

local bad = wrong_type(core_checks())
if bad then
  return { WRONG_TYPE, bad }
end

local id, token, reason = ARGV[A], ARGV[A + 1], ARGV[A + 2]
local st = load_state(id)
local code = check_lease(st, token)
if code ~= OK then
  return { code }
end
local raw = redis.call('HGET', K.tasks, id)
local json = dead_letter(id, st, reason, now_ms(), 'MALFORMED', reason, raw)
return { OK, json }
