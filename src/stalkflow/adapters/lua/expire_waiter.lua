-- Time a waiter out: remove it and admit its step's re-run.
-- ARGV: the waiter id, the dispatch grace (ms).
POLICY.grace = tonumber(ARGV[2])
if redis.call('EXISTS', K.run) == 0 then
  return {'missing'}
end
if not running() then
  return result(0, {})
end
local released = {}
if not expire_waiter(ARGV[1], released) then
  return result(0, {})
end
return result(1, released)
