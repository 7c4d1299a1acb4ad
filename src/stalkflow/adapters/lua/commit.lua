-- Apply one step execution's commit atomically. ARGV[1]: the spec (JSON).
if redis.call('EXISTS', K.run) == 0 then
  return {'missing'}
end
if not running() then
  return result(0, {})
end
local spec = cjson.decode(ARGV[1])
local released = {}
if spec.d then
  if redis.call('SADD', K.committed, spec.d.id) == 0 then
    return result(0, {})
  end
  redis.call('HDEL', K.inprog, spec.d.id)
  if not spec.retry then
    -- a retry of this delivery (same lineage) must get its collected sets back
    redis.call('HDEL', K.collected, spec.d.lid)
  end
end
if spec.retry then
  -- the retry keeps the step's num_workers slot
  redis.call('HSET', K.inprog, spec.retry.id, spec.retry.json)
elseif spec.d then
  free_slot(spec.d.step, released)
end
if spec.waiter then
  if register_waiter(spec.waiter) and spec.waiter.ev then
    stream_append(spec.waiter.ev)
  end
end
for _, r in ipairs(spec.resolved) do
  -- only a waiter still registered is resolved: another event may have won
  if remove_waiter(r.wid) then
    admit(r.d, released)
  end
end
for _, d in ipairs(spec.routed) do
  admit(d, released)
end
for _, ev in ipairs(spec.stream) do
  stream_append(ev)
end
if spec.finish then
  finish(spec.finish)
end
return result(1, released)
