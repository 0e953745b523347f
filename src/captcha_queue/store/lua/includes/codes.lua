-- Return codes shared by every script (kept in step with scripts.Code).
local OK = 0
local RETRY_SCHEDULED = 1
local PAUSED = 1
local NOT_FOUND = -1
local LEASE_LOST = -2
local CANCELLED = -3
local ALREADY_FINAL = -4
local WRONG_TYPE = -5
local QUEUE_FULL = -6
local IDEMPOTENCY_CONFLICT = -7
