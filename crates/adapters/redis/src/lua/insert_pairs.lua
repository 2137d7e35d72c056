-- Inserts many (timeline, entry) pairs in one call: fan-out's hot path.
-- KEYS: per pair, the user's entries (tl) then its meta; ARGV: cap, then
-- per pair its member. The rules of common.lua's add and enforce_cap, in fewer
-- commands: only a materialised (or building) timeline takes the entry
-- (its meta always holds a floor, '' for none), an entry below the floor
-- is not kept, the oldest entries past the cap are dropped and raise the
-- floor. Trimming waits until a timeline is an eighth over its cap, then
-- takes it back to the cap: a full timeline then pays for trimming once
-- per cap/8 inserts, not on each (it was half of an insert's time).
-- Returns how many pairs were kept.
local cap = tonumber(ARGV[1])
local slack = math.floor(cap / 8)
local kept = 0
for i = 1, #KEYS / 2 do
  local tl, meta, member = KEYS[2 * i - 1], KEYS[2 * i], ARGV[i + 1]
  local floor = redis.call('HGET', meta, 'floor')
  if floor and (floor == '' or string.sub(member, 1, 16) >= floor) then
    redis.call('ZADD', tl, 0, member)
    local n = redis.call('ZCARD', tl)
    if n == 1 then
      -- A key created after the timeline began lives as long as it.
      local ttl = redis.call('PTTL', meta)
      if ttl > 0 then redis.call('PEXPIRE', tl, ttl) end
    elseif n > cap + slack then
      redis.call('ZPOPMIN', tl, n - cap)
      local oldest = string.sub(redis.call('ZRANGE', tl, 0, 0)[1], 1, 16)
      if floor == '' or oldest > floor then redis.call('HSET', meta, 'floor', oldest) end
    end
    kept = kept + 1
  end
end
return kept
