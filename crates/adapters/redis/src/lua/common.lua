-- Shared by every timeline script. Keys of one user, all hash-tagged alike:
local tl = KEYS[1]    -- sorted set of entries, every score 0
local meta = KEYS[2]  -- hash: state ('ready' | 'building'), floor (hex or '')
local rp = KEYS[3]    -- while building: post ids removed since it began
local ra = KEYS[4]    -- while building: author ids removed since it began
-- A member is 16 hex digits of the post id then 16 of the author id: with
-- equal scores a sorted set orders by member, that is by post id.

-- A key created after the timeline began lives as long as the timeline.
local function inherit_ttl(key)
  local ttl = redis.call('PTTL', meta)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end

local function raise_floor(floor)
  if floor == '' then return end
  local current = redis.call('HGET', meta, 'floor')
  if current and current ~= '' and current >= floor then return end
  redis.call('HSET', meta, 'floor', floor)
  redis.call('ZREMRANGEBYLEX', tl, '-', '(' .. floor)
end

-- Idempotent: a post id always comes with the same author.
local function add(member)
  local floor = redis.call('HGET', meta, 'floor')
  if floor and floor ~= '' and string.sub(member, 1, 16) < floor then return end
  local fresh = redis.call('EXISTS', tl) == 0
  redis.call('ZADD', tl, 0, member)
  if fresh then inherit_ttl(tl) end
end

local function enforce_cap(cap)
  local n = redis.call('ZCARD', tl)
  if n > cap then
    redis.call('ZREMRANGEBYRANK', tl, 0, n - cap - 1)
    local oldest = redis.call('ZRANGE', tl, 0, 0)[1]
    raise_floor(string.sub(oldest, 1, 16))
  end
end
