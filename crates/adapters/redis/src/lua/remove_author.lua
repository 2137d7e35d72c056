-- ARGV: author id (hex).
if redis.call('EXISTS', meta) == 0 then return 0 end
local members = redis.call('ZRANGE', tl, 0, -1)
for _, member in ipairs(members) do
  if string.sub(member, 17) == ARGV[1] then redis.call('ZREM', tl, member) end
end
if redis.call('HGET', meta, 'state') == 'building' then
  redis.call('SADD', ra, ARGV[1])
  inherit_ttl(ra)
end
return 1
