-- One more failed login for KEYS[1] (a hash: n = count, t = when the last
-- one happened, Unix ms), forgotten ARGV[2] ms after it. ARGV[1]: now (ms).
-- Returns the new count. One script, so concurrent failures all count.
local count = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 't', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return count
