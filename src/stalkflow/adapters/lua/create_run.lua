-- Create a run and admit its seed deliveries. ARGV[1]: the spec (JSON).
if redis.call('EXISTS', K.run) == 1 then
  return {'exists'}
end
-- leftovers of an expired run with this id are not part of the new one
for kind, key in pairs(K) do
  if kind ~= 'state' then
    redis.call('DEL', key)
  end
end
local spec = cjson.decode(ARGV[1])
POLICY.grace = tonumber(spec.grace_ms)
redis.call('HSET', K.run, 'record', spec.record, 'workflow', spec.workflow,
  'status', 'running', 'updated_at', spec.updated_at, 'hitl', spec.hitl,
  'seq', 0, 'qseq', 0, 'wseq', 0)
for step, cap in pairs(spec.caps) do
  redis.call('HSET', K.caps, step, cap)
end
if spec.state then
  redis.call('DEL', K.state)
  redis.call('HSET', K.state, 'v', 1, 'b', spec.state)
end
for _, w in ipairs(spec.waiters) do
  register_waiter(w)
end
for _, b in ipairs(spec.buffers) do
  for _, entry in ipairs(b[2]) do
    buffer_add(b[1], entry[1], entry[2], entry[3])
  end
end
local released = {}
for _, d in ipairs(spec.deliveries) do
  admit(d, released)
end
return {'created', released}
