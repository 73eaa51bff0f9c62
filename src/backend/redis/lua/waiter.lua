-- Lists (ARGV[7] = '1', for one lease from now) or removes ARGV[6] as an
-- exclusive waiter of lock ARGV[5]: a state write waiting for `state`, a
-- request that gave up, a waiter seen dead.
if ARGV[7] == '1' then
  if redis.call('ZADD', lk(ARGV[5], ':w'), now + LEASE, ARGV[6]) == 1 then touch(ARGV[5]) end
  redis.call('SADD', k('locks'), ARGV[5])
elseif redis.call('ZREM', lk(ARGV[5], ':w'), ARGV[6]) == 1 then
  touch(ARGV[5])
  -- Shared requests queued behind it may go now.
  redis.call('PUBLISH', k('wake:' .. ARGV[5]), 'withdrawn')
end
return 1
