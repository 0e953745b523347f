--- submitTasks: accept a batch of validated tasks, appended in order to the tail of their priority.
---
--- Everything is read and checked first; the batch is then written whole, or nothing is written.
--- Called by Redis only while it is below maxmemory (scripts.py gives it no allow-oom flag).
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
--- KEYS[16] epoch STRING  random id of this data set
--- KEYS[17] webhooks HASH  task id -> webhook delivery JSON (written only for a task with a pingback)
--- KEYS[18] webhooks_due ZSET  task id -> ms of the delivery's next step
--- ARGV: the standard prefix, then
---   [A]   epoch candidate (random id, SET NX: the first writer of a data set names it)
---   [A+1] max_queued: the most tasks the queues may hold ("" = no limit)
---   [A+2] n, the number of tasks, followed by 7 arguments per task:
---         id, priority, idempotency key ("" = none), digest of method, params and priority,
---         expires_in_ms ("" = none), task JSON without its closing brace, state JSON without its
---         closing brace (the script appends submitted_at / expires_at from Redis time and closes both).
--- Returns: {OK, epoch, submitted, id, id, ...}: the data set's epoch and its submitted counter with
---          this batch counted (the producer's watermark for check_data_loss: a failover that loses
---          this acknowledged batch takes the counter back below it), then the ids in input order
---          (an idempotent duplicate answers the existing id),
---          {QUEUE_FULL, tasks queued, max_queued} when the new tasks would not fit,
---          {IDEMPOTENCY_CONFLICT, index of the task in this call (0-based), existing id} when a key
---          names a task with another digest, or {WRONG_TYPE, message}. Nothing is written but on OK.
--- @include "args"
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

local PER_TASK = 7
local n = tonumber(ARGV[A + 2])
local max_queued = ARGV[A + 1] ~= '' and tonumber(ARGV[A + 1]) or nil
if not n or #ARGV ~= A + 2 + n * PER_TASK or (ARGV[A + 1] ~= '' and not max_queued) then
  return redis.error_reply('ERR submitTasks: malformed arguments')
end

local now = now_ms()

-- The task an idempotency key names, if it still lives (a mapping whose task is gone or whose
-- result TTL has passed is free again, as the reaper would make it), and that task's digest.
local function named_by(key)
  local existing = redis.call('HGET', K.idem, key)
  if not existing or redis.call('HEXISTS', K.state, existing) == 0 then
    return nil
  end
  local expires = finite(redis.call('ZSCORE', K.expiry, existing))
  if expires and expires <= now then
    return nil
  end
  local st = load_state(existing)
  -- A state written before digests were stored (or unreadable) cannot conflict.
  return existing, st and st.idem_digest or nil
end

-- Read and check every task first.
-- reply[2], reply[3]: the epoch and the submitted counter, filled in once the batch is written.
local reply = { OK, '', 0 }
local fresh = {} -- ARGV offsets of the tasks to write
local created = {} -- idempotency key -> { id, digest } of a task created by this call
for i = 0, n - 1 do
  local b = A + 3 + i * PER_TASK
  local id, priority, key, digest, expires_in = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  if not K.queue[priority] or (expires_in ~= '' and not finite(expires_in)) then
    return redis.error_reply('ERR submitTasks: malformed arguments of task ' .. i)
  end
  local existing, existing_digest = nil, nil
  if key ~= '' then
    if created[key] then
      existing, existing_digest = created[key][1], created[key][2]
    else
      existing, existing_digest = named_by(key)
    end
  end
  if existing and existing_digest and existing_digest ~= digest then
    return { IDEMPOTENCY_CONFLICT, i, existing }
  end
  if existing then
    reply[#reply + 1] = existing
  else
    fresh[#fresh + 1] = b
    if key ~= '' then
      created[key] = { id, digest }
    end
    reply[#reply + 1] = id
  end
end

if max_queued and #fresh > 0 then
  local queued = 0
  for _, priority in ipairs(PRIORITIES) do
    queued = queued + redis.call('LLEN', K.queue[priority])
  end
  if queued + #fresh > max_queued then
    return { QUEUE_FULL, queued, max_queued }
  end
end

-- Then write. Producers reap too (a small bounded batch), so finished tasks expire on time even
-- while no worker runs.
reap_finished(now, 100)
reap_dead(now, 100)
local submitted_at = fmt_s(now)
local task_args, state_args, idem_args = {}, {}, {}
local by_priority = { high = {}, normal = {}, low = {} }
for _, b in ipairs(fresh) do
  local id, priority, key, expires_in = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 4]
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
  task_args[#task_args + 1] = ARGV[b + 5] .. task_tail .. '}'
  state_args[#state_args + 1] = id
  state_args[#state_args + 1] = ARGV[b + 6] .. state_tail .. '}'
  local list = by_priority[priority]
  list[#list + 1] = id
  if key ~= '' then
    idem_args[#idem_args + 1] = key
    idem_args[#idem_args + 1] = id
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
write_chunked('HSET', K.idem, idem_args)
for _, priority in ipairs(PRIORITIES) do
  write_chunked('RPUSH', K.queue[priority], by_priority[priority])
end
if #fresh > 0 then
  redis.call('HINCRBY', K.counters, 'submitted', #fresh)
  arm_wake()
end
reply[2] = redis.call('SET', K.epoch, ARGV[A], 'NX', 'GET') or ARGV[A]
reply[3] = tonumber(redis.call('HGET', K.counters, 'submitted') or '0') or 0
return reply
