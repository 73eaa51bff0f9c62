-- Renews every lease of owner ARGV[5] to now + lease, never past a hold's
-- --ttl, never reviving a lapsed one. Returns {now, {held...}, {lost...}}.
local me = ARGV[5]
local held, lost = {}, {}
for _, name in ipairs(redis.call('SMEMBERS', k('owner:' .. me))) do
  local e = redis.call('ZSCORE', lk(name, ':h'), me)
  if e and tonumber(e) > now then
    local ne = now + LEASE
    local cap = meta_num(redis.call('HGET', lk(name, ':m'), me), 'ttl_end_ms')
    if cap and cap < ne then ne = cap end
    if ne > tonumber(e) then redis.call('ZADD', lk(name, ':h'), ne, me) end
    held[#held + 1] = name
  else
    lapsed(name, prune(name), '')
    redis.call('SREM', k('owner:' .. me), name)
    lost[#lost + 1] = name
  end
end
return {now, held, lost}
