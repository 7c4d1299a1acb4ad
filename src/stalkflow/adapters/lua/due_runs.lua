-- The runs a sweep should look at now, held back for a while from other sweepers.
-- KEYS: the active-runs index. ARGV: limit, hold (ms).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local run_ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, run_id in ipairs(run_ids) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), run_id)
end
return run_ids
