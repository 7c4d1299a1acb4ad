-- Buffer an event for collect_events and hand out the complete set exactly once.
-- ARGV: buffer key, delivery (lineage) id, the event's type name ('' when it is not
-- expected: it is not buffered), the encoded event, the expected counts (JSON object:
-- type name -> how many). Returns {0} (incomplete), {1, set, workflow} or {-1} (no such
-- run); the set is a JSON array of "<owner>\0<type>\0<event>" entries in arrival order
-- (the caller puts them in its expected order). O(1) per call; the call that completes
-- a set reads and clears the buffer, once.
local run = redis.call('HMGET', K.run, 'workflow', 'status')
if not run[1] then
  return {-1}
end
local bk, owner = ARGV[1], ARGV[2]
-- the sets this delivery completed, by buffer: a re-execution gets the same one
local raw_sets = redis.call('HGET', K.collected, owner)
local sets = raw_sets and cjson.decode(raw_sets) or {}
if sets[bk] then
  return {1, sets[bk], run[1]}
end
-- an event already handed out in a set is never buffered again
if redis.call('SISMEMBER', K.consumed, bk .. '\0' .. owner) == 1 then
  return {0}
end
if ARGV[3] ~= '' then
  buffer_add(bk, owner, ARGV[3], ARGV[4])
end
for kind, n in pairs(cjson.decode(ARGV[5])) do
  if tonumber(redis.call('HGET', K.buffers, bk .. '\0k\0' .. kind) or '0') < n then
    if run[2] ~= 'running' then
      expire_with_run(K.buffers)
    end
    return {0}
  end
end
local need = cjson.decode(ARGV[5])
local picked = {}
local entries = buffer_take(bk)
for _, entry in ipairs(entries) do
  local kind = buffer_entry_kind(entry)
  if (need[kind] or 0) > 0 then
    need[kind] = need[kind] - 1
    picked[#picked + 1] = entry
  end
end
-- every event of the buffer is spent, picked or not
local members = {}
for _, entry in ipairs(entries) do
  members[#members + 1] = bk .. '\0' .. string.sub(entry, 1, string.find(entry, '\0', 1, true) - 1)
end
for i = 1, #members, 1000 do
  redis.call('SADD', K.consumed, unpack(members, i, math.min(i + 999, #members)))
end
local set = #picked > 0 and cjson.encode(picked) or '[]'
sets[bk] = set
redis.call('HSET', K.collected, owner, cjson.encode(sets))
if run[2] ~= 'running' then
  expire_with_run(K.collected)
  expire_with_run(K.consumed)
end
return {1, set, run[1]}
