-- KEYS: lock. ARGV: token, lease (ms). Only the holder renews.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
