-- ARGV: cap, source floor (hex or ''), members from SQL...
if redis.call('HGET', meta, 'state') ~= 'building' then return 0 end
for i = 3, #ARGV do
  local member = ARGV[i]
  if redis.call('SISMEMBER', rp, string.sub(member, 1, 16)) == 0
    and redis.call('SISMEMBER', ra, string.sub(member, 17)) == 0 then
    add(member)
  end
end
enforce_cap(tonumber(ARGV[1]))
raise_floor(ARGV[2])
redis.call('HSET', meta, 'state', 'ready')
redis.call('DEL', rp, ra)
return 1
