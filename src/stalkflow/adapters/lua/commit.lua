-- Apply one step execution's commit atomically. ARGV[1]: the spec (JSON).
if redis.call('EXISTS', K.run) == 0 then
  return {'missing'}
end
if not running() then
  return result(0, {})
end
local spec = cjson.decode(ARGV[1])
POLICY.grace = tonumber(spec.grace_ms)
local released = {}
if spec.d then
  local id = spec.d.id
  if redis.call('SISMEMBER', K.committed, id) == 1 then
    return result(0, {})
  end
  if spec.tok then
    -- fenced: an execution whose lease ran out and was re-claimed commits nothing
    local holder = redis.call('HGET', K.claims, id)
    if holder and holder ~= spec.tok then
      return result(0, {})
    end
  end
end
if spec.wseq and tonumber(redis.call('HGET', K.run, 'wseq') or '0') ~= tonumber(spec.wseq) then
  -- a waiter registered since the caller routed its outputs might take one
  return {'stale'}
end
if spec.d then
  local id = spec.d.id
  redis.call('SADD', K.committed, id)
  redis.call('HDEL', K.inprog, id)
  redis.call('HDEL', K.claims, id)
  redis.call('HDEL', K.begins, id)
  redis.call('ZREM', K.leases, id)
  redis.call('SREM', K.sched, id)
  if not spec.retry then
    -- a retry of this delivery (same lineage) must get its collected sets back
    redis.call('HDEL', K.collected, spec.d.lid)
  end
end
if spec.retry then
  -- the retry keeps the step's num_workers slot
  local retry = spec.retry
  redis.call('HSET', K.inprog, retry.id, retry.json)
  local due = now_ms() + tonumber(retry.delay_ms)
  if retry.stored then
    -- kept here until due: the sweep hands it out then
    redis.call('SADD', K.sched, retry.id)
    redis.call('ZADD', K.leases, due, retry.id)
  else
    redis.call('ZADD', K.leases, due + POLICY.grace, retry.id)
  end
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
if spec.d and #released > 0 then
  -- the outbox: a redelivered message of this delivery re-sends what never started
  local ids = {}
  for _, pair in ipairs(released) do
    ids[#ids + 1] = pair[1]
  end
  redis.call('HSET', K.outbox, spec.d.id, cjson.encode(ids))
end
if spec.finish then
  finish(spec.finish)
end
return result(1, released)
