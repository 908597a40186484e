-- Write the planner's decision for a page of credentials (state/schedule.ts ScheduleStore.write).
--
-- KEYS[1] due set (id -> slot ms, or lease end while claimed)
-- KEYS[2] leased set (id -> lease end)
-- KEYS[3] deadlines (id -> deadline ms)
-- KEYS[4] policy-of hash (id -> name of the per-policy set holding it)
-- KEYS[5] failing set (id -> retry ms after a failed rotation)
-- ARGV[1] key prefix of the per-policy sets (`<prefix>:schedule:policy:`; same hash tag as KEYS)
-- ARGV[2] now ms
-- then 6 per credential: id, at ms ('' = not scheduled: removed everywhere), deadline ms,
--   policy name, retry ms ('' = not held back), '1' when its rotation just finished (the lease ends)
--
-- A credential under an unexpired lease (a scheduled rotation of it in flight) keeps the lease as
-- its due score: the rotation's end replans it. Without that, a rebuild running meanwhile would put
-- its past slot back and the next tick would look at it again for nothing.
local now = tonumber(ARGV[2])
local written = 0
for i = 3, #ARGV, 6 do
  local id, at, deadline, policy, retry, finished = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local lease = redis.call('ZSCORE', KEYS[2], id)
  if finished == '1' and lease then
    redis.call('ZREM', KEYS[2], id)
    lease = false
  end
  local old = redis.call('HGET', KEYS[4], id)
  if at == '' then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    redis.call('ZREM', KEYS[5], id)
    if old then
      redis.call('ZREM', ARGV[1] .. old, id)
      redis.call('HDEL', KEYS[4], id)
    end
  else
    if old and old ~= policy then redis.call('ZREM', ARGV[1] .. old, id) end
    if old ~= policy then redis.call('HSET', KEYS[4], id, policy) end
    redis.call('ZADD', ARGV[1] .. policy, at, id)
    redis.call('ZADD', KEYS[3], deadline, id)
    if lease and tonumber(lease) > now then
      redis.call('ZADD', KEYS[1], lease, id)
    else
      redis.call('ZADD', KEYS[1], at, id)
      if lease then redis.call('ZREM', KEYS[2], id) end
    end
    if retry ~= '' then redis.call('ZADD', KEYS[5], retry, id) else redis.call('ZREM', KEYS[5], id) end
  end
  written = written + 1
end
return written
