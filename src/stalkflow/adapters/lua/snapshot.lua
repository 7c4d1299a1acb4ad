-- Everything about a run at one moment, for Context.to_dict().
local run = redis.call('HMGET', K.run, 'record', 'status', 'updated_at', 'outcome')
if not run[1] then
  return {'missing'}
end
local state = redis.call('HMGET', K.state, 'v', 'b')
local queued = {}
for _, member in ipairs(redis.call('ZRANGE', K.queue, 0, -1)) do
  queued[#queued + 1] = redis.call('HGET', K.queued, member)
end
local waiters = {}
for _, waiter_id in ipairs(redis.call('ZRANGE', K.worder, 0, -1)) do
  waiters[#waiters + 1] = redis.call('HGET', K.waiters, waiter_id)
end
return {'found', run[1], run[2], run[3], run[4] or '', state[1] or '0', state[2] or '',
  state[2] and 1 or 0, queued, redis.call('HVALS', K.inprog), waiters,
  redis.call('HGETALL', K.buffers), redis.call('HGETALL', K.collected)}
