-- Hands ARGV[6]'s live hold of ARGV[5] to ARGV[7], keeping its lease end,
-- --ttl, metadata and token. Returns 1, or 0 when ARGV[6] holds it no more.
local name, from, to = ARGV[5], ARGV[6], ARGV[7]
local hk = lk(name, ':h')
lapsed(name, prune(name), '')
local e = redis.call('ZSCORE', hk, from)
if not e then return 0 end
local m = redis.call('HGET', lk(name, ':m'), from)
redis.call('ZREM', hk, from)
redis.call('HDEL', lk(name, ':m'), from)
redis.call('SREM', k('owner:' .. from), name)
redis.call('ZADD', hk, e, to)
redis.call('HSET', lk(name, ':m'), to, m)
redis.call('SADD', k('owner:' .. to), name)
touch(name)
return 1
