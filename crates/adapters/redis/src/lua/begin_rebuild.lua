-- ARGV: ttl (ms). Creates the timeline empty when absent.
local state = redis.call('HGET', meta, 'state')
if not state then
  redis.call('HSET', meta, 'state', 'building', 'floor', '')
  redis.call('DEL', tl, rp, ra)
elseif state == 'ready' then
  redis.call('HSET', meta, 'state', 'building')
  redis.call('DEL', rp, ra)
end
redis.call('PEXPIRE', meta, ARGV[1])
redis.call('PEXPIRE', tl, ARGV[1])
return 1
