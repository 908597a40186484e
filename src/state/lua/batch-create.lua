-- Store a new batch: its record, its plan, its place in the list index and its first event.
--
-- KEYS[1]  the batch record      KEYS[2]  its plan (JSON array of credential ids, never changed)
-- KEYS[3]  the list index (sorted set, score = creation time in ms)
-- KEYS[4]  the events stream
-- ARGV[1]  batch id   ARGV[2] record JSON   ARGV[3] plan JSON   ARGV[4] score
-- ARGV[5]  the events stream's approximate MAXLEN; then the events' JSON texts
-- Returns 1 stored, 0 a batch with this id exists (nothing written).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
for i = 6, #ARGV do
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[i], 't', 'batch')
end
return 1
