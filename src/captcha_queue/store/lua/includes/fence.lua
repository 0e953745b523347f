-- The fence prologue of every transition a worker makes under its lease: the lease token it presents
-- must still be the task's (checked against the state before anything is written).

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
