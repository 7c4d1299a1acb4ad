-- End a running run. ARGV[1]: the finish spec (JSON). Returns 1, or 0 if it had ended.
if redis.call('EXISTS', K.run) == 0 or not running() then
  return 0
end
finish(cjson.decode(ARGV[1]))
return 1
