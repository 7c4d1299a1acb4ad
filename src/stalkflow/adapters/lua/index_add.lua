-- List a run, in creation order. KEYS: the index, its counter. ARGV: the run id.
redis.call('ZADD', KEYS[1], 'NX', redis.call('INCR', KEYS[2]), ARGV[1])
return 1
