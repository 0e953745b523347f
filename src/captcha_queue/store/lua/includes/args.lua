-- The standard ARGV prefix of every queue script (QueueCore._conf_args in queue/_core.py). The script's
-- keys come by name in `K`, prepended by the loader from its `--- KEYS[i] name TYPE` header lines
-- (queue_<priority> keys as K.queue[priority]); Keys.named in store/keys.py builds them.
--
-- ARGV[1] result_ttl_ms   ARGV[2] dead_ttl_ms   ARGV[3] events_maxlen   ARGV[4] done channel
-- ARGV[5] the command announcing on it: PUBLISH, or SPUBLISH on a Redis Cluster (sharded pub/sub)
-- Script-specific arguments start at ARGV[6] (A).
local PRIORITIES = { 'high', 'normal', 'low' }
local PRIORITY = { high = true, normal = true, low = true }
local C = {
  result_ttl_ms = tonumber(ARGV[1]),
  dead_ttl_ms = tonumber(ARGV[2]),
  events_maxlen = tonumber(ARGV[3]),
  channel = ARGV[4],
  publish = ARGV[5] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH',
}
local A = 6
