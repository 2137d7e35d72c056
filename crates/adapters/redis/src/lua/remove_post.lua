-- ARGV: post id (hex).
if redis.call('EXISTS', meta) == 0 then return 0 end
redis.call('ZREMRANGEBYLEX', tl, '[' .. ARGV[1], '(' .. ARGV[1] .. 'g')
if redis.call('HGET', meta, 'state') == 'building' then
  redis.call('SADD', rp, ARGV[1])
  inherit_ttl(rp)
end
return 1
