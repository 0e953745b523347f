--- quarantineTask: dead-letter a claimed task whose stored Task JSON the client could not read.
---
--- KEYS[1] state HASH  id -> state JSON (includes/state.lua)
--- KEYS[2] results HASH  id -> final Result JSON
--- KEYS[3] active ZSET  id -> lease deadline ms (Redis time)
--- KEYS[4] delayed ZSET  id -> ms a retry becomes claimable
--- KEYS[5] expiry ZSET  id -> ms a finished task's fields are deleted
--- KEYS[6] counters HASH  counters (a fixed set of integer fields)
--- KEYS[7] events STREAM  final results (capped)
--- KEYS[8] tasks HASH  id -> Task JSON (immutable)
--- KEYS[9] dead HASH  id -> DeadLetter JSON
--- KEYS[10] dead_index ZSET  id -> ms it was dead-lettered
--- KEYS[11] webhooks HASH  task id -> webhook delivery JSON (written only for a task with a pingback)
--- KEYS[12] webhooks_due ZSET  task id -> ms of the delivery's next step
--- ARGV: the standard prefix, then [A] task id, [A+1] lease token, [A+2] reason.
--- Returns: {OK, result JSON} | {LEASE_LOST} | {CANCELLED} | {ALREADY_FINAL} | {WRONG_TYPE, message}.
--- @include "args"
--- @include "codes"
--- @include "util"
--- @include "state"
--- @include "fence"
--- @include "finish"

local id, token, reason = ARGV[A], ARGV[A + 1], ARGV[A + 2]
local st = load_state(id)
local code = check_lease(st, token)
if code ~= OK then
  return { code }
end
local checks = finish_checks(st, 'error', 'dead', false)
checks[#checks + 1] = { K.dead_index, 'zset' } -- HSET dead is its first write; tasks is only read
local bad = wrong_type(checks)
if bad then
  return { WRONG_TYPE, bad }
end
local raw = redis.call('HGET', K.tasks, id)
local json = dead_letter(id, st, reason, now_ms(), 'MALFORMED', reason, raw)
return { OK, json }
