-- Decide whether a delivery runs now, and claim it for the caller.
-- ARGV: delivery id, token, lease (ms), max deliveries (0: no limit), the token
-- of a holder the caller knows to be dead ('' if none), dispatch grace (ms), the
-- encoded event to append to the stream when the answer is run ('' for none).
-- Returns {status, record, status, updated_at, outcome, token, begins, redispatch,
-- waiters, waiter seq}:
-- missing | finished | duplicate (redispatch: what its commit released that never
-- started and is overdue, as {id, json} pairs; each gets a fresh grace) |
-- busy (another execution's claim is live) |
-- exhausted (started max deliveries times) | run (token: the claim; '' when the
-- delivery was not released here, so nothing is claimed). A busy reply's token
-- is the holder's.
local run = redis.call('HMGET', K.run, 'record', 'status', 'updated_at', 'outcome')
if not run[1] then
  return {'missing'}
end
local function reply(status, token, begins, redispatch)
  return {status, run[1], run[2], run[3], run[4] or '', token or '', begins or 0,
    redispatch or {}, 0, 0}
end
-- the step runs: publish its notice; say how many waiters routing must consider
local function run_reply(token, begins)
  if ARGV[7] ~= '' then
    stream_append(ARGV[7])
  end
  local answer = reply('run', token, begins)
  answer[9] = redis.call('HLEN', K.waiters)
  answer[10] = tonumber(redis.call('HGET', K.run, 'wseq') or '0')
  return answer
end
if run[2] ~= 'running' then
  return reply('finished')
end
local id, token = ARGV[1], ARGV[2]
if redis.call('SISMEMBER', K.committed, id) == 1 then
  -- The outbox: what this delivery's commit released that never started and is
  -- overdue (its dispatch failed and was marked so, or its grace ran out). Only
  -- overdue ones: a duplicate message must not re-send children that merely wait
  -- in the broker's queue, or duplicates would breed down the run.
  local again = {}
  local raw = redis.call('HGET', K.outbox, id)
  if raw then
    local now = now_ms()
    for _, child in ipairs(cjson.decode(raw)) do
      local deadline = redis.call('ZSCORE', K.leases, child)
      if deadline and tonumber(deadline) <= now and redis.call('HEXISTS', K.claims, child) == 0
          and redis.call('SISMEMBER', K.sched, child) == 0 then
        local json = redis.call('HGET', K.inprog, child)
        if json then
          redis.call('ZADD', K.leases, now + tonumber(ARGV[6]), child)
          again[#again + 1] = {child, json}
        end
      end
    end
  end
  return reply('duplicate', '', 0, again)
end
if redis.call('HEXISTS', K.inprog, id) == 0 then
  return run_reply()
end
local now = now_ms()
local holder = redis.call('HGET', K.claims, id)
if holder and holder ~= token and holder ~= ARGV[5] then
  if tonumber(redis.call('ZSCORE', K.leases, id) or '0') > now then
    return reply('busy', holder)
  end
end
local begins
if holder == token then
  begins = tonumber(redis.call('HGET', K.begins, id) or '1')
else
  begins = redis.call('HINCRBY', K.begins, id, 1)
end
local limit = tonumber(ARGV[4])
if limit > 0 and begins > limit then
  return reply('exhausted', '', begins)
end
redis.call('HSET', K.claims, id, token)
redis.call('ZADD', K.leases, now + tonumber(ARGV[3]), id)
redis.call('SREM', K.sched, id)
return run_reply(token, begins)
