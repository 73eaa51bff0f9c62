-- Release: ARGV 5 name, 6 the releasing owner's id, 7 '1' to force,
-- 8 with force, the one holder id to remove ('' all).
-- Returns {'released', {id...}} | {'other', type, id} | {'absent'} | {'none'}.
local name, me, force, only = ARGV[5], ARGV[6], ARGV[7] == '1', ARGV[8]
local hk = lk(name, ':h')
lapsed(name, prune(name), '')
local removed = {}
if force and only ~= '' then
  if not redis.call('ZSCORE', hk, only) then return {'absent'} end
  removed = {only}
elseif force then
  removed = redis.call('ZRANGE', hk, 0, -1)
elseif redis.call('ZSCORE', hk, me) then
  removed = {me}
else
  local first = redis.call('ZRANGE', hk, 0, 0)[1]
  if first then return {'other', redis.call('HGET', lk(name), 'type') or '', first} end
  return {'none'}
end
for _, h in ipairs(removed) do
  drop(name, h)
  if h ~= me then note_lost(name, h, '') end
end
if #removed > 0 then redis.call('PUBLISH', k('wake:' .. name), 'release') end
return {'released', removed}
