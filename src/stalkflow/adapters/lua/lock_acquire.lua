-- KEYS: lock. ARGV: token, lease (ms). Returns -1 when acquired, else the
-- holder's remaining lease in ms (the longest anyone needs to wait).
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return -1
end
return redis.call('PTTL', KEYS[1])
