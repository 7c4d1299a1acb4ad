-- Hand out a run's deliveries whose deadline has passed, and say when to look again.
-- ARGV: limit, dispatch grace (ms), lease (ms), the workflows the caller serves
-- (JSON array; empty: all). Returns {'gone'} (the run ended or expired),
-- {'skip', next} (another workflow's run) or {'ok', next, {{id, json, scheduled}...}}.
-- Each delivery handed out gets a fresh grace, and loses its claim: whoever
-- starts it next claims it anew.
if redis.call('EXISTS', K.run) == 0 or not running() then
  return {'gone'}
end
local now = now_ms()
local lease = tonumber(ARGV[3])
local served = cjson.decode(ARGV[4])
if #served > 0 then
  local workflow = redis.call('HGET', K.run, 'workflow')
  local mine = false
  for _, name in ipairs(served) do
    if name == workflow then
      mine = true
    end
  end
  if not mine then
    return {'skip', now + lease}
  end
end
local out = {}
local due = redis.call('ZRANGEBYSCORE', K.leases, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
POLICY.grace = tonumber(ARGV[2])
for _, id in ipairs(due) do
  local json = nil
  if string.sub(id, 1, 2) == 'w\0' then
    -- a waiter's timeout kept here: expire it, hand out its step's re-run
    local released = {}
    expire_waiter(string.sub(id, 3), released)
    redis.call('ZREM', K.leases, id)
    for _, pair in ipairs(released) do
      out[#out + 1] = {pair[1], pair[2], 1}
    end
  else
    json = redis.call('HGET', K.inprog, id)
  end
  if json then
    local scheduled = redis.call('SREM', K.sched, id)
    redis.call('HDEL', K.claims, id)
    redis.call('ZADD', K.leases, now + tonumber(ARGV[2]), id)
    out[#out + 1] = {id, json, scheduled}
  elseif string.sub(id, 1, 2) ~= 'w\0' then
    redis.call('ZREM', K.leases, id)
  end
end
-- no later than the first deadline, and at least once a lease
local next_check = now + lease
local first = redis.call('ZRANGE', K.leases, 0, 0, 'WITHSCORES')
if first[2] and tonumber(first[2]) < next_check then
  next_check = tonumber(first[2])
end
return {'ok', next_check, out}
