-- List a run, in creation order, and have sweeps look at it.
-- KEYS: the index, its counter, the active-runs index. ARGV: the run id, first look (ms).
redis.call('ZADD', KEYS[1], 'NX', redis.call('INCR', KEYS[2]), ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[3], 'LT', now + tonumber(ARGV[2]), ARGV[1])
return 1
