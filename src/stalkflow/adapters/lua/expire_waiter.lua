-- Time a waiter out: remove it and admit its step's re-run.
-- ARGV: the waiter id, the dispatch grace (ms).
POLICY.grace = tonumber(ARGV[2])
if redis.call('EXISTS', K.run) == 0 then
  return {'missing'}
end
if not running() then
  return result(0, {})
end
local redelivery = redis.call('HGET', K.wtimeouts, ARGV[1])
if not redelivery or not remove_waiter(ARGV[1]) then
  return result(0, {})
end
local released = {}
admit(cjson.decode(redelivery), released)
return result(1, released)
