-- Acquire-try: grants `name` to holder ARGV[6] or says who is in the way.
-- ARGV: 5 name, 6 holder id, 7 type, 8 --ttl in ms ('' none), 9 metadata
-- JSON ('' none), 10 the waiter id to register if exclusive and blocked
-- ('' none), 11 the hierarchy's ranks (JSON name -> rank), 12 the rank of
-- any other name, 13 a fresh epoch, 14 the latest server time (ms) this
-- try may be decided at ('' none): later, the client may have given up.
-- {'late', now} then: nothing granted, its waiter entry removed.
-- Returns {'late', now} | {'hierarchy', held, rank} | {'blocked', type, {id, end...},
-- {waiter, end...}, now} | {'granted', token, epoch, already, upgraded, type,
-- now, {lapsed id, reason...}, {the lock as read.lua gives it}}.
local name, me, typ = ARGV[5], ARGV[6], ARGV[7]
local ttl = tonumber(ARGV[8])
local hk, wk = lk(name, ':h'), lk(name, ':w')
local gone = prune(name)
if ARGV[14] ~= '' and now > tonumber(ARGV[14]) then
  lapsed(name, gone, '')
  if ARGV[10] ~= '' and redis.call('ZREM', wk, ARGV[10]) == 1 then
    touch(name)
    redis.call('PUBLISH', k('wake:' .. name), 'withdrawn')
  end
  return {'late', now}
end
local mine = redis.call('ZSCORE', hk, me)
if not mine then
  local worst_name, worst = held_after(name, me, ARGV[11], ARGV[12])
  if worst then
    lapsed(name, gone, '')
    return {'hierarchy', worst_name, worst}
  end
end
local cur = redis.call('HGET', lk(name), 'type')
local n = redis.call('ZCARD', hk)
local others = n - (mine and 1 or 0)
local blocked = false
if typ == 'exclusive' then
  blocked = others > 0
elseif not mine then
  if cur == 'exclusive' and others > 0 then
    blocked = true
  else
    for _, w in ipairs(redis.call('ZRANGE', wk, 0, -1)) do
      if w ~= ARGV[10] then blocked = true end
    end
  end
end
if blocked then
  lapsed(name, gone, '')
  if typ == 'exclusive' and ARGV[10] ~= '' then
    if redis.call('ZADD', wk, now + LEASE, ARGV[10]) == 1 then touch(name) end
    redis.call('SADD', k('locks'), name)
  end
  return {'blocked', cur or '', redis.call('ZRANGE', hk, 0, -1, 'WITHSCORES'),
    redis.call('ZRANGE', wk, 0, -1, 'WITHSCORES'), now}
end
local token, already, upgraded = 0, 0, 0
if mine then
  already = 1
  local m = redis.call('HGET', lk(name, ':m'), me)
  token = meta_num(m, 'token') or 0
  if typ == 'exclusive' and cur == 'shared' then
    upgraded = 1
    touch(name)
    token = redis.call('HINCRBY', lk(name), 'fence', 1)
    m = string.gsub(m, '"token":%d+', '"token":' .. token, 1)
    redis.call('HSET', lk(name, ':m'), me, m)
    redis.call('HSET', lk(name), 'type', 'exclusive')
  end
  local e, cap = now + LEASE, meta_num(m, 'ttl_end_ms')
  if cap and cap < e then e = cap end
  if e > tonumber(mine) then redis.call('ZADD', hk, e, me) end
else
  if n == 0 then redis.call('HSET', lk(name), 'type', typ) end
  touch(name)
  token = redis.call('HINCRBY', lk(name), 'fence', 1)
  local ttl_end = ttl and (now + ttl) or nil
  local e = now + LEASE
  if ttl_end and ttl_end < e then e = ttl_end end
  redis.call('ZADD', hk, e, me)
  redis.call('HSET', lk(name, ':m'), me, meta_json(now, ttl_end, token, ARGV[9]))
  redis.call('SADD', k('owner:' .. me), name)
  redis.call('SADD', k('locks'), name)
  redis.call('HDEL', lk(name, ':lost'), me)
end
if ARGV[10] ~= '' and redis.call('ZREM', wk, ARGV[10]) == 1 then touch(name) end
lapsed(name, gone, me)
local flat = {}
for _, g in ipairs(gone) do flat[#flat + 1] = g[1]; flat[#flat + 1] = g[2] end
-- The lock as it now is, as read.lua gives it: no second round trip.
local hs = redis.call('ZRANGE', hk, 0, -1, 'WITHSCORES')
local holders = {}
for i = 1, #hs, 2 do
  holders[#holders + 1] = hs[i]
  holders[#holders + 1] = hs[i + 1]
  holders[#holders + 1] = redis.call('HGET', lk(name, ':m'), hs[i]) or 'null'
end
return {'granted', token, epoch(ARGV[13]), already, upgraded,
  redis.call('HGET', lk(name), 'type'), now, flat,
  {name, redis.call('HGET', lk(name), 'type'), holders, redis.call('ZRANGE', wk, 0, -1, 'WITHSCORES'),
   redis.call('HGET', lk(name), 'changed') or ''}}
