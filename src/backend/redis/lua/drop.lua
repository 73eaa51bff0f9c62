-- Takes over from holders of ARGV[5] that the caller saw dead on their
-- own host: ARGV 6 the new owner's id (for the audit), 7.. the holder ids.
-- Returns the ids removed.
local name = ARGV[5]
local removed = {}
for i = 7, #ARGV do
  if redis.call('ZSCORE', lk(name, ':h'), ARGV[i]) then
    drop(name, ARGV[i])
    note_lost(name, ARGV[i], ARGV[6])
    removed[#removed + 1] = ARGV[i]
  end
end
if #removed > 0 then redis.call('PUBLISH', k('wake:' .. name), 'release') end
return removed
