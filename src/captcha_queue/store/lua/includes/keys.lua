-- The standard KEYS layout and ARGV prefix of every queue script (Keys.script_keys in keys.py).
--
-- KEYS[1..3]  queue:high, queue:normal, queue:low  LISTs of task ids, head first
-- KEYS[4]     wake         LIST, one marker that blocked claimers BLPOP on
-- KEYS[5]     tasks        HASH id -> Task JSON (immutable)
-- KEYS[6]     state        HASH id -> state JSON (status, attempts, lease, remote id, history)
-- KEYS[7]     active       ZSET id -> lease deadline ms (Redis time)
-- KEYS[8]     delayed      ZSET id -> ms when a retry becomes claimable
-- KEYS[9]     results      HASH id -> final Result JSON
-- KEYS[10]    expiry       ZSET id -> ms when a finished task's fields are deleted
-- KEYS[11]    idem         HASH idempotency key -> task id
-- KEYS[12]    dead         HASH id -> DeadLetter JSON
-- KEYS[13]    dead:index   ZSET id -> ms it was dead-lettered
-- KEYS[14]    counters     HASH of counters (a fixed set of fields)
-- KEYS[15]    events       STREAM of final results (capped)
-- KEYS[16]    epoch        STRING, random id of this data set
-- KEYS[17]    paused       HASH reason, code, since_ms, until_ms while the fleet is paused
-- KEYS[18]    workers      ZSET worker id -> heartbeat deadline ms
--
-- ARGV[1] result_ttl_ms   ARGV[2] dead_ttl_ms   ARGV[3] events_maxlen   ARGV[4] done channel
-- Script-specific arguments start at ARGV[5] (A).
local K = {
  queue = { high = KEYS[1], normal = KEYS[2], low = KEYS[3] },
  wake = KEYS[4], tasks = KEYS[5], state = KEYS[6], active = KEYS[7], delayed = KEYS[8],
  results = KEYS[9], expiry = KEYS[10], idem = KEYS[11], dead = KEYS[12], dead_index = KEYS[13],
  counters = KEYS[14], events = KEYS[15], epoch = KEYS[16], paused = KEYS[17], workers = KEYS[18],
}
local PRIORITIES = { 'high', 'normal', 'low' }
local C = {
  result_ttl_ms = tonumber(ARGV[1]),
  dead_ttl_ms = tonumber(ARGV[2]),
  events_maxlen = tonumber(ARGV[3]),
  channel = ARGV[4],
}
local A = 5
