-- KEYS: lock, wake-up list. ARGV: token. Only the holder releases; one waiter
-- blocked on the wake-up list is woken either way (as the memory store wakes).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], '1')
redis.call('PEXPIRE', KEYS[2], 1000)
return 1
