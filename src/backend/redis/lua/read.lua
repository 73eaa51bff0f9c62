-- Reads locks ARGV[5..] (none: every name in `locks`), dropping lapsed
-- holders first. Returns {now, {name, type, {id, end, meta...},
-- {waiter, end...}, changed ms}...}; a name with neither holders nor
-- waiters is left out.
local names = {}
for i = 5, #ARGV do names[#names + 1] = ARGV[i] end
if #names == 0 then names = redis.call('SMEMBERS', k('locks')) end
local out = {}
for _, name in ipairs(names) do
  lapsed(name, prune(name), '')
  local hs = redis.call('ZRANGE', lk(name, ':h'), 0, -1, 'WITHSCORES')
  local ws = redis.call('ZRANGE', lk(name, ':w'), 0, -1, 'WITHSCORES')
  if #hs > 0 or #ws > 0 then
    local holders = {}
    for i = 1, #hs, 2 do
      holders[#holders + 1] = hs[i]
      holders[#holders + 1] = hs[i + 1]
      holders[#holders + 1] = redis.call('HGET', lk(name, ':m'), hs[i]) or 'null'
    end
    out[#out + 1] = {name, redis.call('HGET', lk(name), 'type') or '', holders, ws,
      redis.call('HGET', lk(name), 'changed') or ''}
  end
end
return {now, out}
