-- Compare-and-set a state blob, honouring the edit lock.
-- KEYS: state, lock, the run of the same key. ARGV: blob, expected version,
-- has token (1/0), token. Returns saved / conflict / locked / lost.
local holder = redis.call('GET', KEYS[2])
if ARGV[3] == '1' then
  if holder ~= ARGV[4] then
    return 'lost'
  end
elseif holder then
  return 'locked'
end
local version = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if version ~= tonumber(ARGV[2]) then
  return 'conflict'
end
redis.call('HSET', KEYS[1], 'v', version + 1, 'b', ARGV[1])
-- the state of a finished run expires with it
local status = redis.call('HGET', KEYS[3], 'status')
if status and status ~= 'running' then
  local ttl = redis.call('PTTL', KEYS[3])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
end
return 'saved'
