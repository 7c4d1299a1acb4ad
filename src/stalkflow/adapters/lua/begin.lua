-- Read what begin() decides on, in one step. ARGV[1]: the delivery id.
local run = redis.call('HMGET', K.run, 'record', 'status', 'updated_at', 'outcome')
if not run[1] then
  return {'missing'}
end
return {'found', run[1], run[2], run[3], run[4] or '',
  redis.call('SISMEMBER', K.committed, ARGV[1])}
