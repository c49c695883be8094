-- topup.lua: apply one ledger entry (top-up or adjustment) to the balance, at most once.
--
-- KEYS[1] account hash   KEYS[2] the account's set of applied ledger ids
-- ARGV[1] ledger id      ARGV[2] amount (micro-units, signed)
--
-- Returns {code, balance}: 1 applied now | 0 already applied (nothing moved) | -1 no account hash
local acct, applied, id, amount = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
if redis.call('EXISTS', acct) == 0 then return {-1, 0} end
if redis.call('SISMEMBER', applied, id) == 1 then
  return {0, tonumber(redis.call('HGET', acct, 'bal') or '0')}
end
local bal = redis.call('HINCRBY', acct, 'bal', amount)
redis.call('SADD', applied, id)
return {1, bal}
