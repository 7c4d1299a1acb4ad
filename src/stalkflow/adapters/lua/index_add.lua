-- List a run, in creation order, and have the sweeps of its workflow look at it.
-- KEYS: the index, its counter, the workflow's active-runs index, the set of
-- workflows. ARGV: the run id, first look (ms), the workflow.
redis.call('ZADD', KEYS[1], 'NX', redis.call('INCR', KEYS[2]), ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[3], 'LT', now + tonumber(ARGV[2]), ARGV[1])
redis.call('SADD', KEYS[4], ARGV[3])
return 1
