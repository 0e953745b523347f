--- requeueDead: give a dead-lettered task a new run under the same id (an operator's decision).
---
--- The dead letter, the result of the run that ended there and its expiry are removed; the task
--- starts again with fresh attempts at the tail of its priority. Its history is kept.
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
--- ARGV: the standard prefix, then [A] task id, [A+1] Task JSON (from the dead letter),
---       [A+2] state JSON without its closing brace (as submitTasks receives it), [A+3] priority,
---       [A+4] idempotency key ("" = none).
--- Returns: {OK} | {NOT_FOUND} (no such dead letter) | {WRONG_TYPE, message}; an error reply (nothing
---          written) for malformed arguments. Refused by Redis above maxmemory (scripts.py).
--- @include "args"
--- @include "codes"
--- @include "util"
--- @include "state"

local bad = wrong_type({
  { K.tasks, 'hash' }, { K.state, 'hash' }, { K.active, 'zset' }, { K.delayed, 'zset' },
  { K.results, 'hash' }, { K.expiry, 'zset' }, { K.idem, 'hash' }, { K.dead, 'hash' },
  { K.dead_index, 'zset' }, { K.counters, 'counters', 'requeued' },
  { K.queue.high, 'list' }, { K.queue.normal, 'list' }, { K.queue.low, 'list' },
})
if bad then
  return { WRONG_TYPE, bad }
end

local id, task_json, state_open, priority, idem = ARGV[A], ARGV[A + 1], ARGV[A + 2], ARGV[A + 3], ARGV[A + 4]
if redis.call('HEXISTS', K.dead, id) == 0 then
  return { NOT_FOUND }
end
local now = now_ms()
local old = load_state(id)
local ok, st = pcall(cjson.decode, state_open .. ',"submitted_ms":' .. fmt_int(now) .. '}')
-- Checked before the first write: a bad argument must not leave the dead letter half-requeued.
if not ok or state_problem(st) or not K.queue[priority] or not pcall(cjson.decode, task_json) then
  return redis.error_reply('ERR requeueDead: malformed arguments for task ' .. id)
end
if old and type(old.history) == 'table' and #old.history > 0 then
  st.history = old.history
end
if old and type(old.submitted_ms) == 'number' then
  st.submitted_ms = old.submitted_ms
end
redis.call('HDEL', K.dead, id)
redis.call('ZREM', K.dead_index, id)
redis.call('HDEL', K.results, id)
redis.call('ZREM', K.expiry, id)
redis.call('ZREM', K.active, id)
redis.call('ZREM', K.delayed, id)
redis.call('HSET', K.tasks, id, task_json)
save_state(id, st)
if idem ~= '' and not redis.call('HGET', K.idem, idem) then
  redis.call('HSET', K.idem, idem, id)
end
redis.call('RPUSH', K.queue[priority], id)
redis.call('HINCRBY', K.counters, 'requeued', 1)
arm_wake()
return { OK }
