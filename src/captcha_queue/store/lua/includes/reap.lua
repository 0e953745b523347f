-- Maintenance run inside the claim path (and by reap()), in bounded batches.

-- Expired leases go back to the head of their priority with attempts + 1, or to the dead-letter
-- queue ("stalled") once max_attempts is used up. Returns how many were handled.
local function reap_leases(now, limit)
  local ids = redis.call('ZRANGEBYSCORE', K.active, '-inf', now, 'LIMIT', 0, limit)
  -- Latest deadline first, so the longest-waiting task ends up at the very head.
  for i = #ids, 1, -1 do
    local id = ids[i]
    redis.call('ZREM', K.active, id)
    local st, raw, problem = load_state(id)
    if st == false or (st == nil and redis.call('HEXISTS', K.tasks, id) == 1) then
      dead_letter(id, placeholder_state(nil, now), 'malformed state', now, 'MALFORMED',
        state_message(problem), raw)
    elseif st and st.status == 'active' then
      add_history(st, now, 'stalled', 'STALLED', 'lease expired')
      st.attempts = st.attempts + 1
      st.token = nil
      if st.attempts >= st.max_attempts then
        dead_letter(id, st, 'stalled', now, 'STALLED',
          'lease expired on each of ' .. fmt_int(st.attempts) .. ' attempts (the worker crashed or hung)')
      else
        st.status = 'queued'
        save_state(id, st)
        redis.call('LPUSH', K.queue[st.priority], id)
      end
    end
  end
  return #ids
end

-- Retries whose time has come go back to the head of their priority. A malformed state is
-- dead-lettered (dropped from the set alone, it would stay in Redis forever, in no list).
local function promote_delayed(now, limit)
  local ids = redis.call('ZRANGEBYSCORE', K.delayed, '-inf', now, 'LIMIT', 0, limit)
  for i = #ids, 1, -1 do
    local id = ids[i]
    redis.call('ZREM', K.delayed, id)
    local st, raw, problem = load_state(id)
    if st == false then
      dead_letter(id, placeholder_state(nil, now), 'malformed state', now, 'MALFORMED',
        state_message(problem), raw)
    elseif st and st.status == 'delayed' then
      st.status = 'queued'
      save_state(id, st)
      redis.call('LPUSH', K.queue[st.priority], id)
    end
  end
  return #ids
end

-- Every field of a finished task is deleted together once its result TTL has passed.
local function reap_finished(now, limit)
  local ids = redis.call('ZRANGEBYSCORE', K.expiry, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    local st = load_state(id)
    if st and type(st.idem) == 'string' and redis.call('HGET', K.idem, st.idem) == id then
      redis.call('HDEL', K.idem, st.idem)
    end
    redis.call('HDEL', K.tasks, id)
    redis.call('HDEL', K.state, id)
    redis.call('HDEL', K.results, id)
    redis.call('ZREM', K.expiry, id)
  end
  return #ids
end

-- Dead letters are kept for dead_ttl_ms, then dropped.
local function reap_dead(now, limit)
  local ids = redis.call('ZRANGEBYSCORE', K.dead_index, '-inf', now - C.dead_ttl_ms, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    redis.call('HDEL', K.dead, id)
    redis.call('ZREM', K.dead_index, id)
  end
  return #ids
end

local function reap_all(now, limit)
  local requeued = reap_leases(now, limit) + promote_delayed(now, limit)
  local cleaned = reap_finished(now, limit) + reap_dead(now, limit)
  return requeued, cleaned
end
