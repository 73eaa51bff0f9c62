-- Takes over from holders of ARGV[5] that the caller saw dead on their
-- own host: ARGV 6 the new owner's id, 7.. the holder ids.
-- Returns the ids removed.
local name = ARGV[5]
local removed = {}
for i = 7, #ARGV do
  if redis.call('ZSCORE', lk(name, ':h'), ARGV[i]) then
    -- Not noted in `lost`: an exited process makes no later call, and a
    -- `run` whose command has just exited must not read this as its hold
    -- taken while the command ran.
    drop(name, ARGV[i])
    removed[#removed + 1] = ARGV[i]
  end
end
if #removed > 0 then redis.call('PUBLISH', k('wake:' .. name), 'release') end
return removed
