-- Buffer an event for collect_events and hand out the complete set exactly once.
-- ARGV: buffer key, delivery id, eligible (1/0), type name, encoded event,
-- expected type names (JSON array). Returns {0} (incomplete), {1, set, workflow} or
-- {-1} (no such run); the set is a JSON array of encoded events.
if redis.call('EXISTS', K.run) == 0 then
  return {-1}
end
local buffer_key, delivery_id = ARGV[1], ARGV[2]
local workflow = redis.call('HGET', K.run, 'workflow')
-- the sets this delivery completed, by buffer: a re-execution gets the same one
local raw_sets = redis.call('HGET', K.collected, delivery_id)
local sets = raw_sets and cjson.decode(raw_sets) or {}
local function events_of(entries)
  local events = {}
  for _, entry in ipairs(entries) do
    events[#events + 1] = entry.e
  end
  return #events > 0 and cjson.encode(events) or '[]'
end
if sets[buffer_key] then
  return {1, events_of(cjson.decode(sets[buffer_key])), workflow}
end
-- an event already handed out in a set is never buffered again
if redis.call('SISMEMBER', K.consumed, buffer_key .. '\0' .. delivery_id) == 1 then
  return {0}
end
local raw = redis.call('HGET', K.buffers, buffer_key)
local buffer = raw and cjson.decode(raw) or {}
if ARGV[3] == '1' then
  local seen = false
  for _, entry in ipairs(buffer) do
    if entry.d == delivery_id then
      seen = true
    end
  end
  if not seen then
    buffer[#buffer + 1] = {d = delivery_id, t = ARGV[4], e = ARGV[5]}
  end
end
local function keep_buffer()
  -- an empty Lua table would encode as {}: write the empty list explicitly
  redis.call('HSET', K.buffers, buffer_key, #buffer > 0 and cjson.encode(buffer) or '[]')
  expire_with_run(K.buffers)
end
local expected = cjson.decode(ARGV[6])
if #buffer < #expected then
  -- cannot be complete yet: no need to match (keeps a fan-in linear, not quadratic)
  keep_buffer()
  return {0}
end
-- entries by type, in arrival order: each expected slot takes the next unused one
local by_type, taken, picked = {}, {}, {}
for index, entry in ipairs(buffer) do
  local list = by_type[entry.t]
  if not list then
    list = {}
    by_type[entry.t] = list
  end
  list[#list + 1] = index
end
for _, kind in ipairs(expected) do
  local list = by_type[kind]
  local next_index = (taken[kind] or 0) + 1
  if not list or not list[next_index] then
    keep_buffer()
    return {0}
  end
  taken[kind] = next_index
  local entry = buffer[list[next_index]]
  picked[#picked + 1] = {d = entry.d, e = entry.e}
end
redis.call('HDEL', K.buffers, buffer_key)
for _, entry in ipairs(buffer) do
  redis.call('SADD', K.consumed, buffer_key .. '\0' .. entry.d)
end
sets[buffer_key] = #picked > 0 and cjson.encode(picked) or '[]'
local set = events_of(picked)
redis.call('HSET', K.collected, delivery_id, cjson.encode(sets))
expire_with_run(K.collected)
expire_with_run(K.consumed)
return {1, set, workflow}
