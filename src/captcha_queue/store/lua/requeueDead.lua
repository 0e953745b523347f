--- requeueDead: give a dead-lettered task a new run under the same id (an operator's decision).
---
--- The dead letter, the result of the run that ended there and its expiry are removed; the task
--- starts again with fresh attempts at the tail of its priority. Its history is kept.
---
--- KEYS: the standard layout (includes/keys.lua).
--- ARGV: the standard prefix, then [A] task id, [A+1] Task JSON (from the dead letter),
---       [A+2] state JSON without its closing brace (as submitTasks receives it), [A+3] priority,
---       [A+4] idempotency key ("" = none).
--- Returns: {OK} | {NOT_FOUND} (no such dead letter) | {WRONG_TYPE, message}; an error reply (nothing
---          written) for malformed arguments. Refused by Redis above maxmemory (scripts.py).
--- @include "keys"
--- @include "codes"
--- @include "util"
--- @include "state"

local bad = wrong_type(core_checks())
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
