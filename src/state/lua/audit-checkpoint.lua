-- Append a signed checkpoint entry to the audit chain and trim the entries it vouches for, in one
-- step: no one ever sees the trim without the checkpoint, or the checkpoint without the trim.
-- Compare-and-append like state/audit.ts APPEND: the caller hashed the checkpoint against the head
-- it read; if another entry was appended since, the current head comes back to hash against.
--
-- KEYS[1]  the audit stream
-- KEYS[2]  the chain head (hash of the last entry)
-- ARGV[1]  the head the checkpoint was hashed against
-- ARGV[2]  the genesis hash (an empty chain's head)
-- ARGV[3]  the checkpoint entry's JSON
-- ARGV[4]  the checkpoint entry's hash
-- ARGV[5]  the id of the last entry trimmed
-- ARGV[6]  the hash of the last entry trimmed (what the checkpoint names)
-- ARGV[7]  the first id kept (XTRIM MINID: everything below goes)
-- Returns {1, checkpoint id, entries trimmed}, {0, current head} to re-hash, or {2} when the
-- last entry to trim is gone already or is not the one exported (a repeated or raced run).
local head = redis.call('GET', KEYS[2])
if not head then head = ARGV[2] end
if head ~= ARGV[1] then return {0, head} end
local last = redis.call('XRANGE', KEYS[1], ARGV[5], ARGV[5])
if #last == 0 then return {2} end
local fields = last[1][2]
local hash
for i = 1, #fields, 2 do
  if fields[i] == 'hash' then hash = fields[i + 1] end
end
if hash ~= ARGV[6] then return {2} end
local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[3], 'prev', ARGV[1], 'hash', ARGV[4])
redis.call('SET', KEYS[2], ARGV[4])
local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[7])
return {1, id, trimmed}
