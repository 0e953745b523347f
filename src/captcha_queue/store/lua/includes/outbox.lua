-- The webhook outbox, as the deliverer's scripts (lua/webhooks/) see it. finish.lua writes a
-- delivery; these scripts lease it, settle it and let an operator send it again.
--
-- Delivery JSON (webhooks HASH, by task id): task, delivery (its id: task id + "." + finish ms, the
-- receiver's deduplication key), url, format ("form" | "get" | "json"), status (the task's final
-- status), result (the Result JSON, as text), state ("pending" | "delivered" | "failed"), attempts
-- (sends started), created_ms, since_ms (the start of its max age: created, or the last operator
-- retry), next_ms? (pending: its next try), lease? and leased_until? (while a deliverer sends it),
-- deliverer?, last_try_ms?, last_status? (HTTP status), last_error?, reason? (why it failed),
-- done_ms? (delivered or failed). Its score in webhooks_due is when its next step is due: the next
-- try, the lease deadline, or (delivered, failed) when the record is deleted.

local DELIVERY_STATES = { pending = true, delivered = true, failed = true }

-- The decoded delivery of `id` or nil (absent), or false and what is wrong (unusable).
local function load_delivery(id)
  local raw = redis.call('HGET', K.webhooks, id)
  if not raw then
    return nil
  end
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' then
    return false, 'not JSON'
  end
  if type(rec.state) ~= 'string' or not DELIVERY_STATES[rec.state] then
    return false, 'state'
  end
  for _, name in ipairs({ 'attempts', 'created_ms', 'since_ms' }) do
    local v = rec[name]
    if type(v) ~= 'number' or v ~= v or v < 0 or v > 1e15 then
      return false, name
    end
  end
  for _, name in ipairs({ 'task', 'delivery', 'url', 'format', 'result' }) do
    if type(rec[name]) ~= 'string' then
      return false, name
    end
  end
  if not pcall(cjson.encode, rec) then
    return false, 'a value that cannot be encoded'
  end
  return rec
end

local function save_delivery(id, rec)
  redis.call('HSET', K.webhooks, id, cjson.encode(rec))
end

-- An unusable record (someone else wrote it) is kept for `keep_ms` as a failed one, readable by
-- `captcha-queue webhooks show`, with what was wrong.
local function fail_unusable(id, problem, now, keep_ms)
  save_delivery(id, {
    task = id, delivery = id, url = '', format = '', result = '', status = '', state = 'failed',
    attempts = 0, created_ms = now, since_ms = now, done_ms = now,
    reason = 'the delivery record in Redis is unusable (' .. problem .. ')',
  })
  redis.call('ZADD', K.webhooks_due, now + keep_ms, id)
end

-- Give up on a delivery: failed (with `reason`), kept visible for `keep_ms`.
local function give_up(id, rec, now, keep_ms, reason)
  rec.state = 'failed'
  rec.reason = reason
  rec.done_ms = now
  rec.next_ms = nil
  rec.lease = nil
  rec.leased_until = nil
  save_delivery(id, rec)
  redis.call('ZADD', K.webhooks_due, now + keep_ms, id)
end

-- The reason of a delivery given up for age.
local function expired_reason(max_age_ms)
  return 'expired: not delivered within ' .. string.format('%g', max_age_ms / 1000) .. ' s'
end

-- A count of milliseconds given as an argument: a whole number in [0, 1e15], or nil.
local function arg_ms(value)
  local n = tonumber(value)
  if n and n == n and n >= 0 and n <= 1e15 and math.floor(n) == n then
    return n
  end
  return nil
end
