-- The live token of ARGV[6]'s hold of ARGV[5]: {epoch, token}, or {}.
local e = redis.call('ZSCORE', lk(ARGV[5], ':h'), ARGV[6])
if not e or tonumber(e) <= now then return {} end
local tok = meta_num(redis.call('HGET', lk(ARGV[5], ':m'), ARGV[6]), 'token')
return {redis.call('GET', k('epoch')) or '', tok or 0}
