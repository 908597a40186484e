-- Move one due credential, only if its due score is still the one the tick read
-- (state/schedule.ts ScheduleStore.claim / reslot). Two overlapping ticks, or a tick retried after
-- a stall, read the same score: the first move changes it, so the second finds another and does
-- nothing. That compare is what makes a tick start each due rotation once.
--
-- KEYS[1] due set, KEYS[2] leased set, KEYS[3] the credential's per-policy set (reslot only)
-- ARGV[1] id, ARGV[2] the score read, ARGV[3] 'lease' or 'reslot', ARGV[4] the new score
-- 'lease': the due score becomes the lease end (not removed: a process that dies before the start
--   loses nothing, the next tick after the lease finds it again); 'reslot': a new time to look
--   (the next allowed instant), the forecast's copy moved with it.
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
if ARGV[3] == 'lease' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[3], 'XX', ARGV[4], ARGV[1])
end
return 1
