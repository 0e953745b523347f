--- claimTasks: take up to `count` tasks, strict priority order, FIFO within a priority.
---
--- First the bounded maintenance: expired leases back to the head (attempts + 1, or dead-lettered
--- "stalled"), due retries promoted, finished tasks and old dead letters deleted. Then, unless the
--- fleet is paused, pop ids: each gets a random lease token and a deadline from Redis time. Tasks
--- whose expires_at has passed end "expired" without being handed out; malformed entries are
--- dead-lettered with a reason (and reported in the warnings).
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
--- KEYS[16] paused HASH  reason, code, since_ms, until_ms while the fleet is paused
--- KEYS[17] webhooks HASH  task id -> webhook delivery JSON (written only for a task with a pingback)
--- KEYS[18] webhooks_due ZSET  task id -> ms of the delivery's next step
--- ARGV: the standard prefix, then [A] worker id, [A+1] count, [A+2] lease_ms,
---       [A+3] token prefix (random; the n-th claim's token is prefix:n), [A+4] maintenance batch size.
--- Returns: {OK | PAUSED, wait_hint_ms, warnings, claim, claim, ...}
---   wait_hint_ms: ms until a delayed retry is due, a lease expires or a pause ends (-1: none known);
---   warnings: list of strings about skipped entries;
---   claim: {id, task JSON, attempt, token, lease deadline ms, remote id | nil, remote submit ms | nil}.
---   Or {WRONG_TYPE, message} when a key every claim needs has the wrong type.
--- @include "args"
--- @include "codes"
--- @include "util"
--- @include "state"
--- @include "finish"
--- @include "reap"

-- A key of the wrong type (written by someone else) stops the claim before any write: reaping
-- into a broken list would lose tasks. The caller logs the message and backs off.
local checks = core_checks()
checks[#checks + 1] = { K.paused, 'hash' }
local bad = wrong_type(checks)
if bad then
  return { WRONG_TYPE, bad }
end

local worker, count, lease_ms = ARGV[A], tonumber(ARGV[A + 1]), tonumber(ARGV[A + 2])
local token_prefix, batch = ARGV[A + 3], tonumber(ARGV[A + 4])
local now = now_ms()
local warnings = {}

reap_all(now, batch)

local function wait_hint(paused_until)
  local hint = -1
  -- `at`: ms of Redis time (scores written by someone else may be inf: ignored).
  local function consider(at)
    at = finite(at)
    if at and (hint < 0 or at - now < hint) then
      hint = math.max(0, math.min(at - now, 86400000)) -- an integer reply: keep it in range
    end
  end
  consider(redis.call('ZRANGE', K.delayed, 0, 0, 'WITHSCORES')[2])
  consider(redis.call('ZRANGE', K.active, 0, 0, 'WITHSCORES')[2])
  consider(paused_until)
  return hint
end

-- Paused: the HASH exists and until_ms is absent or in the future.
if redis.call('EXISTS', K.paused) == 1 then
  local until_ms = finite(redis.call('HGET', K.paused, 'until_ms'))
  if not until_ms or until_ms > now then
    return { PAUSED, wait_hint(until_ms), warnings }
  end
end

local reply = { OK, -1, warnings }
local claimed = 0
-- Each list is read in chunks (LRANGE, then one HMGET of the states and one of the task bodies) and
-- trimmed once; the claims are written together at the end (one HSET state, one ZADD active).
local state_args, active_args = {}, {}
local function write_claims()
  if #state_args > 0 then
    redis.call('HSET', K.state, unpack(state_args))
    redis.call('ZADD', K.active, unpack(active_args))
    state_args, active_args = {}, {}
  end
end
-- Ids taken by this call: a repeated one is read again, after the claims so far are written, so it
-- is seen as what this call made of it (a stale entry), as if each id had been popped on its own.
local taken_ids = {}
local function take(id, priority, raw, task_json)
  if taken_ids[id] then
    write_claims()
    raw, task_json = redis.call('HGET', K.state, id), redis.call('HGET', K.tasks, id)
  end
  taken_ids[id] = true
  local st, raw_state, problem = decode_state(raw)
  local has_task = task_json ~= false
  if st == nil and not has_task then
    warnings[#warnings + 1] = 'queued id ' .. id .. ' has no task: dead-lettered'
    dead_letter(id, placeholder_state(priority, now), 'no task', now, 'MALFORMED',
      'the queue held an id with no task')
  elseif not st then
    warnings[#warnings + 1] = 'task ' .. id .. ': ' .. state_message(problem) .. ': dead-lettered'
    dead_letter(id, placeholder_state(priority, now), 'malformed state', now, 'MALFORMED',
      state_message(problem), raw_state)
  elseif not has_task then
    warnings[#warnings + 1] = 'task ' .. id .. ' has no task body: dead-lettered'
    dead_letter(id, st, 'no task', now, 'MALFORMED', 'the task body is missing from Redis')
  elseif st.status ~= 'queued' then
    warnings[#warnings + 1] = 'queued id ' .. id .. ' is ' .. st.status .. ': stale entry skipped'
  elseif type(st.expires_ms) == 'number' and now >= st.expires_ms then
    finish(id, st, 'expired', now, { error_code = 'EXPIRED',
      error_message = 'the task expired before a worker claimed it' })
  else
    claimed = claimed + 1
    local token = token_prefix .. ':' .. fmt_int(claimed)
    local deadline = now + lease_ms
    st.status = 'active'
    st.token = token
    st.worker = worker
    st.claimed_ms = now
    if type(st.started_ms) ~= 'number' then
      st.started_ms = now
    end
    state_args[#state_args + 1] = id
    state_args[#state_args + 1] = cjson.encode(st)
    active_args[#active_args + 1] = deadline
    active_args[#active_args + 1] = id
    reply[#reply + 1] = {
      id, task_json, st.attempts + 1, token, deadline,
      st.remote_id or false, st.remote_ms or false,
    }
  end
end

-- Bound the work of one call, however many stale or malformed ids a list holds.
local pops_left = count + 100
local CHUNK = 500 -- ids per LRANGE/HMGET: unpack() is limited by the C stack
local emptied = {} -- priority -> true when this call took every id of its list
for _, priority in ipairs(PRIORITIES) do
  local list = K.queue[priority]
  local used = 0
  while claimed < count and pops_left > 0 do
    local want = math.min(count - claimed, pops_left, CHUNK)
    local ids = redis.call('LRANGE', list, used, used + want - 1)
    if #ids > 0 then
      local raws = redis.call('HMGET', K.state, unpack(ids))
      local bodies = redis.call('HMGET', K.tasks, unpack(ids))
      for i, id in ipairs(ids) do
        take(id, priority, raws[i], bodies[i])
      end
      used = used + #ids
      pops_left = pops_left - #ids
    end
    if #ids < want then
      emptied[priority] = true
      break
    end
  end
  if used > 0 then
    redis.call('LTRIM', list, used, -1)
  end
end
write_claims()

-- Work left: re-arm the marker so the next blocked claimer wakes too.
for _, priority in ipairs(PRIORITIES) do
  if not emptied[priority] and redis.call('LLEN', K.queue[priority]) > 0 then
    arm_wake()
    break
  end
end
reply[2] = wait_hint(nil)
return reply
