--- submitTasks: accept a batch of validated tasks, appended in order to the tail of their priority.
---
--- KEYS: the standard layout (includes/keys.lua); writes queue:*, wake, tasks, state, idem, counters, epoch,
---       and deletes the fields of finished tasks whose TTL has passed (results, expiry, dead letters).
--- ARGV: the standard prefix, then
---   [A]   epoch candidate (random id, SET NX: the first writer of a data set names it)
---   [A+1] n, the number of tasks, followed by 6 arguments per task:
---         id, priority, idempotency key ("" = none), expires_in_ms ("" = none),
---         task JSON without its closing brace, state JSON without its closing brace
---         (the script appends submitted_at / expires_at from Redis time and closes both).
--- Returns: {OK, id, id, ...} in input order (an idempotent duplicate answers the existing id),
---          or {WRONG_TYPE, message}.
--- @include "keys"
--- @include "codes"
--- @include "util"
--- @include "state"
--- @include "finish"
--- @include "reap"

local checks = core_checks()
checks[#checks + 1] = { K.epoch, 'string' }
local bad = wrong_type(checks)
if bad then
  return { WRONG_TYPE, bad }
end

local now = now_ms()
local submitted_at = fmt_s(now)
-- Producers reap too (a small bounded batch), so finished tasks expire on time even while no worker
-- runs, and an idempotency key whose result has expired is free again.
reap_finished(now, 100)
reap_dead(now, 100)
local n = tonumber(ARGV[A + 1])
local reply = { OK }
local task_args, state_args = {}, {}
local by_priority = { high = {}, normal = {}, low = {} }
local created = {}
local accepted = 0

for i = 0, n - 1 do
  local b = A + 2 + i * 6
  local id, priority, idem, expires_in = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local existing = nil
  if idem ~= '' then
    existing = redis.call('HGET', K.idem, idem)
    -- The mapping lives while the task or its result lives; a dangling one is replaced.
    if existing and not created[existing] and redis.call('HEXISTS', K.state, existing) == 0 then
      existing = nil
    end
  end
  if existing then
    reply[#reply + 1] = existing
  else
    local task_tail = ',"submitted_at":' .. submitted_at
    -- The producer's result TTL travels with the task: the worker that finishes it keeps the
    -- result that long, whatever its own default.
    local state_tail = ',"submitted_ms":' .. fmt_int(now) .. ',"result_ttl_ms":' .. fmt_int(C.result_ttl_ms)
    if expires_in ~= '' then
      local expires_ms = now + tonumber(expires_in)
      task_tail = task_tail .. ',"expires_at":' .. fmt_s(expires_ms)
      state_tail = state_tail .. ',"expires_ms":' .. fmt_int(expires_ms)
    end
    task_args[#task_args + 1] = id
    task_args[#task_args + 1] = ARGV[b + 4] .. task_tail .. '}'
    state_args[#state_args + 1] = id
    state_args[#state_args + 1] = ARGV[b + 5] .. state_tail .. '}'
    local list = by_priority[priority]
    list[#list + 1] = id
    if idem ~= '' then
      redis.call('HSET', K.idem, idem, id)
    end
    created[id] = true
    accepted = accepted + 1
    reply[#reply + 1] = id
  end
end

-- Variadic writes in chunks: Lua's unpack() is limited by the C stack (about 8000 values).
local CHUNK = 1000
local function write_chunked(command, key, args)
  for first = 1, #args, CHUNK do
    redis.call(command, key, unpack(args, first, math.min(first + CHUNK - 1, #args)))
  end
end
write_chunked('HSET', K.tasks, task_args)
write_chunked('HSET', K.state, state_args)
for _, priority in ipairs(PRIORITIES) do
  write_chunked('RPUSH', K.queue[priority], by_priority[priority])
end
if accepted > 0 then
  redis.call('HINCRBY', K.counters, 'submitted', accepted)
  arm_wake()
end
redis.call('SET', K.epoch, ARGV[A], 'NX')
return reply
