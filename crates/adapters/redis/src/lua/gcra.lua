-- GCRA over one key: the theoretical arrival time (TAT) of the next request,
-- in milliseconds of the Redis server's clock (every API instance then
-- counts against one clock). KEYS[1]: the client's key for one route class.
-- ARGV[1]: the interval between requests once the burst is spent (ms);
-- ARGV[2]: the burst (limit).
-- Returns {allowed (0/1), remaining, reset_ms, retry_after_ms}.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tolerance = interval * burst

local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local next_tat = tat + interval
local allowed_at = next_tat - tolerance
if now < allowed_at then
  -- Refused: nothing is written, so refusals do not push the wait further.
  return {0, 0, tat - now, allowed_at - now}
end
redis.call('SET', KEYS[1], next_tat, 'PX', next_tat - now)
local remaining = math.floor((tolerance - (next_tat - now)) / interval)
return {1, remaining, next_tat - now, 0}
