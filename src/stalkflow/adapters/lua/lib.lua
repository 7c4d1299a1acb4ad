-- Helpers shared by the run scripts. _redis_client.py prepends a header that maps
-- each key kind to its KEYS entry (K.run, K.stream ...), so key order is defined
-- once, in Python. All keys of a run share one hash tag.
--
-- A delivery travels as {id=, step=, json=, enq=}: its id and step for the
-- bookkeeping, its encoded form (opaque here), and the encoded StepStateChanged
-- that the stream gets if it has to queue.
--
-- Every in-flight delivery has a deadline in K.leases (ms, the server's clock):
-- released, it must be started within the dispatch grace; started, its claim
-- must be renewed within the lease; a retry kept here (K.sched) is due at its
-- deadline. Past it, the sweep (sweep_run.lua) hands the delivery out again.

-- what the calling script's spec says (the store's DeliveryPolicy)
local POLICY = {grace = 300000}

local NOW = nil
local function now_ms()
  if not NOW then
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW
end

local function release(id, json, released)
  redis.call('HSET', K.inprog, id, json)
  redis.call('ZADD', K.leases, now_ms() + POLICY.grace, id)
  released[#released + 1] = {id, json}
end

local function stream_append(json)
  -- ids 0-1, 0-2 ... ; the sequence a reader sees is the id's second part minus one
  local n = redis.call('HINCRBY', K.run, 'seq', 1)
  redis.call('XADD', K.stream, '0-' .. n, 'e', json)
end

local function admit(d, released)
  local cap = tonumber(redis.call('HGET', K.caps, d.step) or '1')
  local busy = tonumber(redis.call('HGET', K.running, d.step) or '0')
  if busy < cap then
    redis.call('HSET', K.running, d.step, busy + 1)
    release(d.id, d.json, released)
    return
  end
  -- FIFO per step: members sort by step, then by arrival
  local n = redis.call('HINCRBY', K.run, 'qseq', 1)
  local member = d.step .. '\0' .. string.format('%016d', n) .. '\0' .. d.id
  redis.call('ZADD', K.queue, 0, member)
  redis.call('HSET', K.queued, member, d.json)
  stream_append(d.enq)
end

local function free_slot(step, released)
  local busy = math.max(0, tonumber(redis.call('HGET', K.running, step) or '0') - 1)
  local head = redis.call('ZRANGEBYLEX', K.queue, '[' .. step .. '\0', '(' .. step .. '\1',
    'LIMIT', 0, 1)[1]
  if head then
    local id = string.sub(head, #step + 19)
    local json = redis.call('HGET', K.queued, head)
    redis.call('ZREM', K.queue, head)
    redis.call('HDEL', K.queued, head)
    release(id, json, released)
    busy = busy + 1
  end
  redis.call('HSET', K.running, step, busy)
end

local function register_waiter(w)
  local first = redis.call('HSET', K.waiters, w.id, w.json) == 1
  if first then
    redis.call('ZADD', K.worder, 'NX', redis.call('HINCRBY', K.run, 'wseq', 1), w.id)
  end
  redis.call('HSET', K.wtimeouts, w.id, w.timeout)
  return first
end

local function remove_waiter(waiter_id)
  local removed = redis.call('HDEL', K.waiters, waiter_id) == 1
  redis.call('ZREM', K.worder, waiter_id)
  redis.call('HDEL', K.wtimeouts, waiter_id)
  return removed
end

local function finish(f)
  redis.call('HSET', K.run, 'status', f.status, 'updated_at', f.now, 'outcome', f.outcome)
  if f.terminal then
    stream_append(f.terminal)
  end
  redis.call('DEL', K.buffers, K.collected, K.consumed, K.waiters, K.worder, K.wtimeouts,
    K.leases, K.claims, K.begins, K.outbox, K.sched)
  redis.call('XADD', K.done, '*', 'status', f.status)
  for _, key in ipairs(KEYS) do
    redis.call('PEXPIRE', key, f.ttl_ms)
  end
  if f.channel then
    -- wakes every client waiting for this run's end (FinishWatcher)
    redis.call('PUBLISH', f.channel, K.run)
  end
end

local function running()
  return redis.call('HGET', K.run, 'status') == 'running'
end

-- A key written after the run finished expires with the run.
local function expire_with_run(key)
  if redis.call('EXISTS', K.run) == 1 and not running() then
    local ttl = redis.call('PTTL', K.run)
    if ttl > 0 then
      redis.call('PEXPIRE', key, ttl)
    end
  end
end

local function result(committed, released)
  local in_flight = redis.call('ZCARD', K.queue)
  for _, busy in ipairs(redis.call('HVALS', K.running)) do
    in_flight = in_flight + tonumber(busy)
  end
  return {committed, redis.call('HGET', K.run, 'status'), in_flight,
    redis.call('HLEN', K.waiters), redis.call('HGET', K.run, 'hitl'), released}
end
