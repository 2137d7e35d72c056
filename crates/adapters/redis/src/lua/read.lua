-- ARGV: before (hex, or '' for the newest), limit, ttl (ms).
-- Returns {0} when not materialised (absent or building), else {1, floor, members}.
local state = redis.call('HGET', meta, 'state')
if state ~= 'ready' then return {0} end
local max = '+'
if ARGV[1] ~= '' then max = '(' .. ARGV[1] end
local members = redis.call('ZREVRANGEBYLEX', tl, max, '-', 'LIMIT', 0, tonumber(ARGV[2]))
-- Reading keeps a timeline alive; one nobody reads expires.
redis.call('PEXPIRE', meta, ARGV[3])
redis.call('PEXPIRE', tl, ARGV[3])
return {1, redis.call('HGET', meta, 'floor'), members}
