-- Shared by every lock script (src/backend/redis/locks.rs). ARGV: 1 the key
-- prefix `wfstate:{NS}:`, 2 an audit event to fill in (JSON), 3 the audit
-- stream's MAXLEN, 4 the lease (ms); each script's own arguments follow.
local P, BASE, MAXLEN = ARGV[1], ARGV[2], ARGV[3]
local LEASE = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
local function k(s) return P .. s end
local function lk(name, part) return P .. 'lock:' .. name .. (part or '') end

-- RFC 3339 (µs, UTC) of server time `ms`.
local function rfc3339(ms, us)
  local secs = math.floor(ms / 1000)
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  -- civil_from_days (H. Hinnant)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', y, m, d,
    math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, us or (ms % 1000) * 1000)
end

local function audit(op, target, detail)
  local ev = cjson.decode(BASE)
  ev.op = op; ev.target = target; ev.detail = detail
  redis.call('XADD', k('audit'), 'MAXLEN', '~', MAXLEN, '*', 'us', now_us, 'event', cjson.encode(ev))
end

-- A field of a holder's metadata JSON (written by `meta_json`, fixed fields
-- first, so the first match is ours and not the caller's metadata).
local function meta_num(m, field)
  if not m then return nil end
  return tonumber(string.match(m, '"' .. field .. '":(%d+)'))
end

local function meta_json(acquired_ms, ttl_end, token, metadata)
  return '{"acquired":"' .. rfc3339(acquired_ms) .. '","acquired_ms":' .. acquired_ms ..
    ',"ttl_end_ms":' .. (ttl_end and tostring(ttl_end) or 'null') ..
    ',"token":' .. token .. ',"metadata":' .. (metadata ~= '' and metadata or 'null') .. '}'
end

-- Records that `holder` lost `name` to `by` ('' when nobody took it yet):
-- its later fenced writes are refused naming `by`. At most 64 kept.
local function note_lost(name, holder, by)
  local key = lk(name, ':lost')
  redis.call('HSET', key, holder, now .. ' ' .. by)
  if redis.call('HLEN', key) > 64 then
    local all = redis.call('HGETALL', key)
    local oldest, at = nil, nil
    for i = 1, #all, 2 do
      local when = tonumber(string.match(all[i + 1], '^(%d+)'))
      if not at or when < at then oldest, at = all[i], when end
    end
    redis.call('HDEL', key, oldest)
  end
end

-- Stamps lock `name` as changed now (a holder or waiter came or went):
-- the record's `timestamp`. A lease renewal is no change.
local function touch(name)
  redis.call('HSET', lk(name), 'changed', now)
end

-- Takes `holder` out of `name` (no audit): the hold, its metadata, its
-- owner-index entry; the type goes with the last holder.
local function drop(name, holder)
  touch(name)
  redis.call('ZREM', lk(name, ':h'), holder)
  redis.call('HDEL', lk(name, ':m'), holder)
  redis.call('SREM', k('owner:' .. holder), name)
  if redis.call('ZCARD', lk(name, ':h')) == 0 then redis.call('HDEL', lk(name), 'type') end
end

-- Removes the holders of `name` whose lease has ended and its lapsed
-- waiters; the lapsed holders as {id, reason}, not yet audited (`lapsed`).
local function prune(name)
  local gone = {}
  for _, h in ipairs(redis.call('ZRANGEBYSCORE', lk(name, ':h'), '-inf', now)) do
    local ttl_end = meta_num(redis.call('HGET', lk(name, ':m'), h), 'ttl_end_ms')
    local reason = (ttl_end and ttl_end <= now) and 'ttl-expired' or 'lease-lapsed'
    drop(name, h)
    gone[#gone + 1] = {h, reason}
  end
  if redis.call('ZREMRANGEBYSCORE', lk(name, ':w'), '-inf', now) > 0 then touch(name) end
  return gone
end

-- Audits the holders `prune` removed, noting who took over (`by`, '' for
-- nobody yet), and wakes the waiters.
local function lapsed(name, gone, by)
  for _, g in ipairs(gone) do
    note_lost(name, g[1], by)
    audit('lease-expired', name, {lock = name, holder = g[1], reason = g[2],
      new_holder = (by ~= '' and by or cjson.null)})
  end
  if #gone > 0 then redis.call('PUBLISH', k('wake:' .. name), 'lapse') end
end

-- The epoch, made (random ARGV `fresh`) by the first grant.
local function epoch(fresh)
  local e = redis.call('GET', k('epoch'))
  if e then return e end
  redis.call('SET', k('epoch'), fresh, 'NX')
  return fresh
end

-- The lock ranked last of those `me` holds live that rank after `name`
-- (ranks: JSON name -> rank, `other` the rank of any other name):
-- its name and rank, or nil when `me` may ask for `name`.
local function held_after(name, me, ranks_json, other_rank)
  local ranks, other = cjson.decode(ranks_json), tonumber(other_rank)
  local function rank(n) return ranks[n] or other end
  local wanted, worst, worst_name = rank(name), nil, nil
  for _, l in ipairs(redis.call('SMEMBERS', k('owner:' .. me))) do
    if l ~= name and rank(l) > wanted then
      local e = redis.call('ZSCORE', lk(l, ':h'), me)
      if e and tonumber(e) > now and (not worst or rank(l) > worst) then
        worst, worst_name = rank(l), l
      end
    end
  end
  return worst_name, worst
end
