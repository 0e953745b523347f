-- Return codes, one per outcome: the first element of every queue script's reply. Kept equal to
-- CODES in store/scripts.py (tests/test_scripts_layout.py compares the two).
local OK = 0
local RETRY_SCHEDULED = 1
local PAUSED = 2
local ALREADY_REPORTED = 3
local NOT_FOUND = -1
local LEASE_LOST = -2
local CANCELLED = -3
local ALREADY_FINAL = -4
local WRONG_TYPE = -5
local QUEUE_FULL = -6
local IDEMPOTENCY_CONFLICT = -7
