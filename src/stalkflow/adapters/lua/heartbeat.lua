-- Renew the lease of a claim. ARGV: delivery id, token, lease (ms).
-- Returns 1, or 0 when the run has ended or the claim is no longer the token's.
if redis.call('HGET', K.run, 'status') ~= 'running' then
  return 0
end
if redis.call('HGET', K.claims, ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('ZADD', K.leases, now_ms() + tonumber(ARGV[3]), ARGV[1])
return 1
