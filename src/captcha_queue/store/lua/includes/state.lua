-- Reading and writing a task's state JSON.
--
-- State fields: status ("queued" | "delayed" | "active" | "done"), attempts (consumed), max_attempts,
-- priority, method, submitted_ms, result_ttl_ms?, expires_ms?, idem?, idem_digest? (of method, params
-- and priority), metadata? (raw JSON text), token?, worker?, claimed_ms? (this attempt), started_ms?
-- (first claim), remote_id?, remote_ms?, history? (Attempt objects), final? (the final status), dead?
-- (the dead-letter reason), reported? ("good" | "bad": a verdict on the answer was queued, reportTask),
-- pingback? and pingback_format? (where and how its result is delivered:
-- finish.lua writes a webhook delivery when pingback is set).
--
-- Anyone with write access can leave anything here. A state is used only when every field has its
-- type and a bounded value, and the whole state encodes again: no later arithmetic, fmt_int or
-- cjson.encode can then fail halfway through a script (Redis keeps the writes made before an error).

local STATUSES = { queued = true, delayed = true, active = true, done = true }
-- Bounds of stored numbers: far beyond any real value, and exact in a double (below 2^53).
local MAX_COUNT = 1000000
local MAX_MS = 1e15 -- milliseconds: the year 33658
local OPTIONAL_MS = { 'result_ttl_ms', 'expires_ms', 'claimed_ms', 'started_ms', 'remote_ms' }
local OPTIONAL_TEXT = {
  'idem', 'idem_digest', 'metadata', 'token', 'worker', 'remote_id', 'final', 'dead', 'reported',
  'pingback', 'pingback_format',
}

-- An integer number in [lo, hi] (false for NaN, inf and every other type).
local function is_int(value, lo, hi)
  return type(value) == 'number' and value >= lo and value <= hi and math.floor(value) == value
end

-- What is wrong with a decoded state (a field name), or nil when it can be used. JSON nulls of
-- optional fields are dropped.
local function state_problem(st)
  if type(st) ~= 'table' then
    return 'not an object'
  end
  if type(st.status) ~= 'string' or not STATUSES[st.status] then
    return 'status'
  end
  if not is_int(st.max_attempts, 1, MAX_COUNT) then
    return 'max_attempts'
  end
  if not is_int(st.attempts, 0, MAX_COUNT) then
    return 'attempts'
  end
  if type(st.priority) ~= 'string' or not PRIORITY[st.priority] then
    return 'priority'
  end
  if type(st.method) ~= 'string' then
    return 'method'
  end
  if not is_int(st.submitted_ms, 0, MAX_MS) then
    return 'submitted_ms'
  end
  for _, name in ipairs(OPTIONAL_MS) do
    if st[name] == cjson.null then
      st[name] = nil
    elseif st[name] ~= nil and not is_int(st[name], 0, MAX_MS) then
      return name
    end
  end
  for _, name in ipairs(OPTIONAL_TEXT) do
    if st[name] == cjson.null then
      st[name] = nil
    elseif st[name] ~= nil and type(st[name]) ~= 'string' then
      return name
    end
  end
  if st.history == cjson.null then
    st.history = nil
  elseif st.history ~= nil then
    if type(st.history) ~= 'table' then
      return 'history'
    end
    local n = 0
    for _, entry in pairs(st.history) do
      n = n + 1
      if type(entry) ~= 'table' then
        return 'history'
      end
    end
    if n ~= #st.history then
      return 'history'
    end
  end
  -- Unknown fields are kept as they are, as long as they encode (no NaN, inf or nesting too deep).
  if not pcall(cjson.encode, st) then
    return 'a value that cannot be encoded'
  end
  return nil
end

-- The decoded state of a raw value (HGET or HMGET state): nil when absent, or false plus the raw text
-- and what is wrong when it is malformed.
local function decode_state(raw)
  if not raw then
    return nil, nil
  end
  local ok, st = pcall(cjson.decode, raw)
  if not ok then
    return false, raw, 'not JSON'
  end
  local problem = state_problem(st)
  if problem then
    return false, raw, problem
  end
  return st, raw
end

-- The decoded state of a task (see decode_state).
local function load_state(id)
  return decode_state(redis.call('HGET', K.state, id))
end

local function save_state(id, st)
  redis.call('HSET', K.state, id, cjson.encode(st))
end

-- The error message of a dead letter for a missing or malformed state (`problem` from load_state).
local function state_message(problem)
  if problem then
    return 'the task state in Redis is unusable (' .. problem .. ')'
  end
  return 'the task state in Redis is missing'
end

-- A stand-in state for an entry whose own state is missing or unreadable, so it can still be finished.
local function placeholder_state(priority, now)
  return {
    status = 'queued', attempts = 0, max_attempts = 1, priority = priority or 'normal',
    method = 'unknown', submitted_ms = now,
  }
end

-- Append one finished attempt to the history (consumed attempts only, so it stays bounded).
local function add_history(st, now, outcome, error_code, error_message)
  local entry = { attempt = st.attempts + 1, outcome = outcome, ended_at = now / 1000 }
  if st.worker then entry.worker_id = st.worker end
  if st.claimed_ms then entry.started_at = st.claimed_ms / 1000 end
  if error_code and error_code ~= '' then entry.error_code = error_code end
  if error_message and error_message ~= '' then entry.error_message = error_message end
  if type(st.history) ~= 'table' then st.history = {} end
  st.history[#st.history + 1] = entry
end
