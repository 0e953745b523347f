-- Reading and writing a task's state JSON.
--
-- State fields: status ("queued" | "delayed" | "active" | "done"), attempts (consumed), max_attempts,
-- priority, method, submitted_ms, expires_ms?, idem?, metadata? (raw JSON text), token?, worker?,
-- claimed_ms? (this attempt), started_ms? (first claim), remote_id?, remote_ms?, history? (Attempt
-- objects), final? (the final status), dead? (the dead-letter reason).

-- The decoded state, nil when absent, or false plus the raw text when it is malformed.
local function load_state(id)
  local raw = redis.call('HGET', K.state, id)
  if not raw then
    return nil, nil
  end
  local ok, st = pcall(cjson.decode, raw)
  if not ok or type(st) ~= 'table' or type(st.status) ~= 'string' or type(st.attempts) ~= 'number'
      or type(st.max_attempts) ~= 'number' or type(st.priority) ~= 'string' or not K.queue[st.priority]
      or type(st.method) ~= 'string' or type(st.submitted_ms) ~= 'number' then
    return false, raw
  end
  return st, raw
end

local function save_state(id, st)
  redis.call('HSET', K.state, id, cjson.encode(st))
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

-- Check a worker's lease token: OK, or the refusal code (and the stored result when already final).
local function check_lease(st, token)
  if not st then
    return LEASE_LOST
  end
  if st.token ~= token then
    return LEASE_LOST
  end
  if st.status == 'active' then
    return OK
  end
  if st.status == 'done' then
    if st.final == 'cancelled' then
      return CANCELLED
    end
    return ALREADY_FINAL
  end
  return LEASE_LOST
end

-- The state of a task its worker is about to finish, or the reply refusing the finish: the fencing
-- shared by completeTask, failTask and expireTask. A repeated finish with the same token (a lost
-- reply) gets the stored result back with ALREADY_FINAL instead of a second write.
local function state_for_finish(id, token)
  local st = load_state(id)
  local code = check_lease(st, token)
  if code == ALREADY_FINAL then
    return nil, { ALREADY_FINAL, redis.call('HGET', K.results, id) }
  elseif code ~= OK then
    return nil, { code }
  end
  return st, nil
end
