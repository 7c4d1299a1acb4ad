-- Make released deliveries that were never started due for the sweep soon
-- (their dispatch failed). ARGV: delay (ms), delivery ids. Returns the run's
-- workflow (whose sweeps must look at it), or '' if it is not running.
if redis.call('EXISTS', K.run) == 0 or not running() then
  return ''
end
local due = now_ms() + tonumber(ARGV[1])
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('HEXISTS', K.inprog, id) == 1 and redis.call('HEXISTS', K.claims, id) == 0 then
    redis.call('ZADD', K.leases, due, id)
  end
end
return redis.call('HGET', K.run, 'workflow')
