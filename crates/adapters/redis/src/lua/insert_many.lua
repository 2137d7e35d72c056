-- ARGV: cap, source floor (hex or ''), members...
if redis.call('EXISTS', meta) == 0 then return 0 end
for i = 3, #ARGV do add(ARGV[i]) end
enforce_cap(tonumber(ARGV[1]))
raise_floor(ARGV[2])
return 1
