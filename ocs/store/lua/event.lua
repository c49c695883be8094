-- event.lua: one-shot charging (CCR-E DIRECT_DEBITING / REFUND_ACCOUNT, RFC 4006 section 6.3).
-- Idempotent by (session, request number) through a closed event session hash.
--
-- KEYS[1] account hash   KEYS[2] event session hash   KEYS[3] shard usage stream   KEYS[4] shard sequence
-- ARGV[1] request number  ARGV[2] shard name
-- ARGV[3] amount (> 0 debit, < 0 refund)  ARGV[4] units  ARGV[5] event time ISO
-- ARGV[6] TTL seconds   ARGV[7] kind ('event' | 'refund')   ARGV[8] require credit ('1': refuse if unaffordable)
-- ARGV[9] packed rating context (for the record and CDR)
--
-- A debit ('event') also writes the CDR of the event (record_id cdr:<session>:<rating group>).
--
-- KEYS[5] / ARGV[10] resellers (docs/wholesale.md "Resellers"; absent = the plain path): the reseller's
--          account hash and its wholesale amount (signed like ARGV[3]): a blocked reseller refuses a
--          debit (BLOCKED), one that cannot pay it refuses when ARGV[8] asks (NOCREDIT); else it is
--          debited (a refund credits it) in the same step, on the same usage record and CDR
--
-- Returns {code, outcome}: 'OK' | 'DUP' | 'NOACCT' | 'BLOCKED' | 'NOCREDIT'
-- @include _lib
-- @include _reseller
local acct, sess, stream, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local req, shard, amount = ARGV[1], ARGV[2], tonumber(ARGV[3])
local units, etime, ttl, kind, need, context = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8], ARGV[9]

local stored = answered(sess, req)
if stored then return {'DUP', stored} end
if redis.call('EXISTS', acct) == 0 then return {'NOACCT', ''} end
if redis.call('HGET', acct, 'st') == 'blocked' and amount > 0 then return {'BLOCKED', ''} end
if need == '1' and amount > 0 then
  local avail = available(acct)
  if avail < amount then return {'NOCREDIT', ''} end
end
local racct, ramount = KEYS[5], tonumber(ARGV[10] or '0')  -- resellers
if racct and amount > 0 then
  local st = redis.call('HGET', racct, 'st')
  if not st or st == 'blocked' then return {'BLOCKED', ''} end
  if need == '1' and available(racct) < ramount then return {'NOCREDIT', ''} end
end
set_context(sess, context)
if racct then  -- resellers: the wholesale debit (or refund) in the same step
  redis.call('HINCRBY', racct, 'bal', 0 - ramount)
  redis.call('HSET', sess, 'rchg', int(ramount))
  reseller_fields(redis.call('HGET', sess, 'rs'), ramount, ramount)
end
local bal = redis.call('HINCRBY', acct, 'bal', 0 - amount)
emit_usage(stream, seq, shard, sess, req, kind, units, units, amount, amount, bal, etime)
if kind == 'event' then
  emit_cdr(stream, seq, shard, sess, units, redis.call('HGET', sess, 'billed'), amount, 'event', etime)
end
local out = outcome('granted', units, 0, amount, 0, bal, 0)
redis.call('HSET', sess, 'closed', '1', 'rq', req, 'o:' .. req, out)
redis.call('EXPIRE', sess, ttl)
return {'OK', out}
