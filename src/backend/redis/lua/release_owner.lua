-- Releases every hold of owner ARGV[5] (the keeper, when the owner has
-- exited; ARGV[6] says why), waking the waiters. Returns how many.
local me = ARGV[5]
local n = 0
for _, name in ipairs(redis.call('SMEMBERS', k('owner:' .. me))) do
  lapsed(name, prune(name), '')
  if redis.call('ZSCORE', lk(name, ':h'), me) then
    drop(name, me)
    n = n + 1
    audit('release', name, {owner_pid = tonumber(string.match(me, '^[^:]*:(%d+):')),
      forced = false, held = true, holder = me, why = ARGV[6]})
    redis.call('PUBLISH', k('wake:' .. name), 'release')
  end
end
redis.call('DEL', k('owner:' .. me))
return n
