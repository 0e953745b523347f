--- purgeDead: empty the dead-letter queue. The tasks' other fields expire with their results.
---
--- KEYS[1] dead HASH  id -> DeadLetter JSON
--- KEYS[2] dead_index ZSET  id -> ms it was dead-lettered
--- ARGV: the standard prefix.
--- Returns: {OK, number of dead letters removed} | {WRONG_TYPE, message}.
--- @include "args"
--- @include "codes"
--- @include "util"

local bad = wrong_type({ { K.dead, 'hash' }, { K.dead_index, 'zset' } })
if bad then
  return { WRONG_TYPE, bad }
end
local n = redis.call('HLEN', K.dead)
redis.call('DEL', K.dead, K.dead_index)
return { OK, n }
