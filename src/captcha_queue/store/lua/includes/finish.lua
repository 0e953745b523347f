-- Writing the one final result of a task, and dead-lettering.

local COUNTER = { success = 'completed', error = 'failed', cancelled = 'cancelled', expired = 'expired' }

-- True when `text` is JSON with no number that is NaN or inf (such as 1e999): it may be embedded
-- as it is in a result every client can read.
local function json_clean(text)
  local ok, value = pcall(cjson.decode, text)
  return ok and (pcall(cjson.encode, value))
end

-- Raw JSON text that is an object (a Result's metadata is a mapping: "0" or "[1]" would make the
-- result unreadable) and encodes again.
local function json_object(text)
  return string.match(text, '^%s*{') ~= nil and json_clean(text)
end

-- The Result JSON, built from the state (method, priority, timings, metadata) and `extra`
-- ({solution = raw JSON, error_code = str, error_message = str, provider = str, account = str,
-- remote_id = str}).
local function result_json(id, st, status, now, extra)
  local parts = {
    '{"id":', cjson.encode(id), ',"status":"', status, '","method":', cjson.encode(st.method),
    ',"priority":"', st.priority, '","attempts":', fmt_int(st.attempts),
    ',"submitted_at":', fmt_s(st.submitted_ms), ',"finished_at":', fmt_s(now),
  }
  if type(st.started_ms) == 'number' then
    parts[#parts + 1] = ',"started_at":' .. fmt_s(st.started_ms)
    parts[#parts + 1] = ',"queue_wait_s":' .. fmt_s(math.max(0, st.started_ms - st.submitted_ms))
    parts[#parts + 1] = ',"solve_s":' .. fmt_s(math.max(0, now - st.started_ms))
  end
  if extra.solution then
    parts[#parts + 1] = ',"solution":' .. extra.solution
  end
  if extra.error_code and extra.error_code ~= '' then
    parts[#parts + 1] = ',"error_code":' .. cjson.encode(extra.error_code)
  end
  if extra.error_message and extra.error_message ~= '' then
    parts[#parts + 1] = ',"error_message":' .. cjson.encode(extra.error_message)
  end
  -- Who solved it (completeTask: where a verdict on the answer goes, reportTask) or made the last
  -- attempt of an error (failTask: no remote id).
  for _, name in ipairs({ 'provider', 'account', 'remote_id' }) do
    if extra[name] and extra[name] ~= '' then
      parts[#parts + 1] = ',"' .. name .. '":' .. cjson.encode(extra[name])
    end
  end
  if type(st.metadata) == 'string' and json_object(st.metadata) then
    parts[#parts + 1] = ',"metadata":' .. st.metadata
  end
  parts[#parts + 1] = '}'
  return table.concat(parts)
end

-- The webhook outbox of a task submitted with a pingback: one delivery record (webhooks HASH, by task
-- id; the Result JSON travels in it as text, so it outlives the result's TTL) and its due time
-- (webhooks_due ZSET), written in the transition that writes the result. The deliverer
-- (captcha_queue/webhooks, lua/webhooks/) leases, sends and settles it. A task without a pingback
-- touches neither key.
local function outbox_checks(checks)
  checks[#checks + 1] = { K.webhooks, 'hash' }
  checks[#checks + 1] = { K.webhooks_due, 'zset' }
  return checks
end

local function add_delivery(id, st, status, now, json)
  -- Scripts that checked the outbox before their first write (finish_checks) found it usable; a
  -- loop script (claim, reap) finishes tasks after other writes, so it checks here and, rather than
  -- fail halfway, skips a delivery whose keys someone overwrote with another type (logged).
  local bad = wrong_type(outbox_checks({}))
  if bad then
    redis.log(redis.LOG_WARNING, 'captcha-queue: no webhook delivery for task ' .. id .. ': ' .. bad)
    return
  end
  local at = fmt_int(now)
  redis.call('HSET', K.webhooks, id, table.concat({
    '{"task":', cjson.encode(id), ',"delivery":', cjson.encode(id .. '.' .. at),
    ',"url":', cjson.encode(st.pingback), ',"format":', cjson.encode(st.pingback_format or 'form'),
    ',"status":"', status, '","state":"pending","attempts":0,"created_ms":', at, ',"since_ms":', at,
    ',"next_ms":', at, ',"result":', cjson.encode(json), '}',
  }))
  redis.call('ZADD', K.webhooks_due, now, id)
end

-- The checks `finish` needs before a script's first write (util.lua's wrong_type): the set the task
-- leaves (by its status), the expiry index and the counter it increments, and the outbox when the
-- task has a pingback. `state` and `results` are read before any write; `events` is written first by
-- `finish`, so a script whose first write is `finish` leaves it out (`first`), any other script
-- checks it too.
local function finish_checks(st, status, counter, first)
  local checks = { { K.expiry, 'zset' }, { K.counters, 'counters', counter or COUNTER[status] } }
  if st and st.pingback then
    outbox_checks(checks)
  end
  if st and st.status == 'active' then
    checks[#checks + 1] = { K.active, 'zset' }
  elseif st and st.status == 'delayed' then
    checks[#checks + 1] = { K.delayed, 'zset' }
  end
  if not first then
    checks[#checks + 1] = { K.events, 'stream' }
  end
  return checks
end

-- Finish a task: write its result once, schedule every field of it for deletion, count it,
-- PUBLISH the id, status and result, append the result to the events stream, and queue its webhook
-- delivery when it has a pingback. Returns the result JSON,
-- or nil when a result already exists (never two final results). The first write is the XADD (see
-- finish_checks); the task leaves the set its status says it is in.
local function finish(id, st, status, now, extra, counter)
  if redis.call('HEXISTS', K.results, id) == 1 then
    return nil
  end
  local json = result_json(id, st, status, now, extra)
  redis.call('XADD', K.events, 'MAXLEN', '~', C.events_maxlen, '*', 'id', id, 'status', status, 'result', json)
  redis.call('HSET', K.results, id, json)
  if st.status == 'active' then
    redis.call('ZREM', K.active, id)
  elseif st.status == 'delayed' then
    redis.call('ZREM', K.delayed, id)
  end
  st.status = 'done'
  st.final = status
  save_state(id, st)
  redis.call('ZADD', K.expiry, now + (tonumber(st.result_ttl_ms) or C.result_ttl_ms), id)
  redis.call('HINCRBY', K.counters, counter or COUNTER[status], 1)
  if st.pingback then
    add_delivery(id, st, status, now, json)
  end
  -- The whole result travels with the announcement, so a waiter wakes without a second read.
  redis.call(C.publish, C.channel,
    '{"id":' .. cjson.encode(id) .. ',"status":"' .. status .. '","result":' .. json .. '}')
  return json
end

-- Dead-letter a task with a reason and its attempt history, and finish it as "error".
-- `raw` (optional) is an unreadable entry to keep for inspection (when it is the task body itself,
-- the body is kept only as raw text). `who` (optional): {provider = str, account = str} of the last
-- attempt, kept in the error result.
local function dead_letter(id, st, reason, now, error_code, error_message, raw, who)
  local parts = { '{"id":', cjson.encode(id), ',"reason":', cjson.encode(reason), ',"dead_at":', fmt_s(now) }
  local task_raw = redis.call('HGET', K.tasks, id)
  if task_raw and task_raw ~= raw and json_clean(task_raw) then
    parts[#parts + 1] = ',"task":' .. task_raw
  elseif task_raw then
    raw = raw or task_raw
  end
  if raw then
    parts[#parts + 1] = ',"raw":' .. cjson.encode(raw)
  end
  if type(st.history) == 'table' and #st.history > 0 then
    parts[#parts + 1] = ',"history":' .. cjson.encode(st.history)
  end
  parts[#parts + 1] = '}'
  redis.call('HSET', K.dead, id, table.concat(parts))
  redis.call('ZADD', K.dead_index, now, id)
  st.dead = reason
  local extra = { error_code = error_code, error_message = error_message }
  if who then
    extra.provider, extra.account = who.provider, who.account
  end
  return finish(id, st, 'error', now, extra, 'dead')
end
