-- ARGV: cap, member. Only a materialised (or building) timeline takes it.
if redis.call('EXISTS', meta) == 0 then return 0 end
add(ARGV[2])
enforce_cap(tonumber(ARGV[1]))
return 1
