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

-- A waiter whose timeout is kept here has a deadline in K.leases, as member
-- 'w\0<waiter id>' (no delivery id holds a NUL): the sweep expires it.
local function waiter_timer(waiter_id)
  return 'w\0' .. waiter_id
end

-- Register (or replace) a waiter; true if it is new. w.due_ms: its timeout, kept here.
local function register_waiter(w)
  local first = redis.call('HSET', K.waiters, w.id, w.json) == 1
  if first then
    redis.call('ZADD', K.worder, 'NX', redis.call('HINCRBY', K.run, 'wseq', 1), w.id)
  end
  redis.call('HSET', K.wtimeouts, w.id, w.timeout)
  if w.due_ms then
    redis.call('ZADD', K.leases, now_ms() + tonumber(w.due_ms), waiter_timer(w.id))
  end
  return first
end

local function remove_waiter(waiter_id)
  local removed = redis.call('HDEL', K.waiters, waiter_id) == 1
  redis.call('ZREM', K.worder, waiter_id)
  redis.call('HDEL', K.wtimeouts, waiter_id)
  redis.call('ZREM', K.leases, waiter_timer(waiter_id))
  return removed
end

-- Time a waiter out: remove it and admit its step's re-run. False if not waiting.
local function expire_waiter(waiter_id, released)
  local redelivery = redis.call('HGET', K.wtimeouts, waiter_id)
  if not redelivery or not remove_waiter(waiter_id) then
    return false
  end
  admit(cjson.decode(redelivery), released)
  return true
end

local function finish(f)
  redis.call('HSET', K.run, 'status', f.status, 'updated_at', f.now, 'outcome', f.outcome)
  -- what only a running run needs: a finished one refuses begins and commits by its
  -- status, and keeps its record, state and stream
  redis.call('DEL', K.buffers, K.collected, K.consumed, K.waiters, K.worder, K.wtimeouts,
    K.leases, K.claims, K.begins, K.outbox, K.sched, K.committed, K.running, K.caps,
    K.queue, K.queued, K.inprog)
  if f.terminal then
    stream_append(f.terminal)  -- wakes the stream's readers
  else
    -- nothing on the stream says so: wake its readers through 'done'
    redis.call('XADD', K.done, '*', 'status', f.status)
  end
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

-- Collect buffers, all in K.buffers, fields by buffer key (bk, JSON: no NUL in it):
--   bk\0n          entries added so far        bk\0e\0<i>  entry i: owner\0type\0event
--   bk\0k\0<type>  entries of that type         bk\0o\0<owner>  the owner has buffered
-- so that adding and checking for a complete set are O(1).
local function buffer_add(bk, owner, kind, ev)
  if redis.call('HSETNX', K.buffers, bk .. '\0o\0' .. owner, '1') == 0 then
    return
  end
  local i = redis.call('HINCRBY', K.buffers, bk .. '\0n', 1)
  redis.call('HSET', K.buffers, bk .. '\0e\0' .. i, owner .. '\0' .. kind .. '\0' .. ev)
  redis.call('HINCRBY', K.buffers, bk .. '\0k\0' .. kind, 1)
end

local function buffer_entry_kind(entry)
  local first = string.find(entry, '\0', 1, true)
  local second = string.find(entry, '\0', first + 1, true)
  return string.sub(entry, first + 1, second - 1)
end

-- The buffer's entries in arrival order; the buffer is cleared.
local function buffer_take(bk)
  local total = tonumber(redis.call('HGET', K.buffers, bk .. '\0n') or '0')
  local entries, fields = {}, {bk .. '\0n'}
  for start = 1, total, 1000 do
    local names = {}
    for i = start, math.min(start + 999, total) do
      names[#names + 1] = bk .. '\0e\0' .. i
    end
    for _, entry in ipairs(redis.call('HMGET', K.buffers, unpack(names))) do
      if entry then
        entries[#entries + 1] = entry
      end
    end
    for _, name in ipairs(names) do
      fields[#fields + 1] = name
    end
  end
  local kinds = {}
  for _, entry in ipairs(entries) do
    local kind = buffer_entry_kind(entry)
    if not kinds[kind] then
      kinds[kind] = true
      fields[#fields + 1] = bk .. '\0k\0' .. kind
    end
    fields[#fields + 1] = bk .. '\0o\0' .. string.sub(entry, 1, string.find(entry, '\0', 1, true) - 1)
  end
  for i = 1, #fields, 1000 do
    redis.call('HDEL', K.buffers, unpack(fields, i, math.min(i + 999, #fields)))
  end
  return entries
end
