-- Publish events to a running run's stream. ARGV: encoded events.
-- Returns 1, or 0 (nothing written) when the run is missing or has ended.
if redis.call('EXISTS', K.run) == 0 or not running() then
  return 0
end
for _, json in ipairs(ARGV) do
  stream_append(json)
end
return 1
