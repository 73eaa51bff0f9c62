-- Whether holder ARGV[6] may ask for lock ARGV[5] (ARGV 7 the ranks, JSON
-- name -> rank, 8 the rank of any other name): a live holder of ARGV[5]
-- may; else {held, rank}, the lock ranked last of those it holds live
-- that rank after ARGV[5], or {} when none does.
local name, me = ARGV[5], ARGV[6]
local e = redis.call('ZSCORE', lk(name, ':h'), me)
if e and tonumber(e) > now then return {} end
local worst_name, worst = held_after(name, me, ARGV[7], ARGV[8])
if worst then return {worst_name, worst} end
return {}
