-- Write a batch's next state if it is still at the revision it was read at (optimistic
-- concurrency), with the items that changed and the batch's events, in one step: a runner and an
-- operator's pause, resume or cancel never overwrite each other, and an event is on the stream
-- exactly when its change is stored.
--
-- KEYS[1]  the batch record (JSON, `{"rev":N,` first)
-- KEYS[2]  the batch's items (hash: credential id -> item JSON)
-- KEYS[3]  the events stream GET /v1/events serves
-- ARGV[1]  the revision the caller read
-- ARGV[2]  the next record's JSON
-- ARGV[3]  the events stream's approximate MAXLEN
-- ARGV[4]  n, the number of changed items; then n pairs (credential id, item JSON); then the
--          events' JSON texts
-- Returns 1 written, 0 the record changed since it was read, -1 no such batch.
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
if string.match(cur, '^{"rev":(%d+)') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
local n = tonumber(ARGV[4])
local i = 5
for _ = 1, n do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[i], 't', 'batch')
  i = i + 1
end
return 1
