-- event.lua: one-shot charging (CCR-E DIRECT_DEBITING / REFUND_ACCOUNT, RFC 4006 section 6.3).
-- Idempotent by (session, request number) through a closed event session hash.
--
-- KEYS[1] account hash   KEYS[2] event session hash   KEYS[3] shard usage stream   KEYS[4] shard sequence
-- ARGV[1] now (epoch ms)  ARGV[2] request number  ARGV[3] shard name
-- ARGV[4] amount (> 0 debit, < 0 refund)  ARGV[5] units  ARGV[6] event time ISO
-- ARGV[7] TTL seconds   ARGV[8] kind ('event' | 'refund')   ARGV[9] require credit ('1': refuse if unaffordable)
-- ARGV[10] packed rating context (for the record and CDR)
--
-- A debit ('event') also writes the CDR of the event (record_id cdr:<session>:<rating group>).
--
-- Returns {code, outcome}: 'OK' | 'DUP' | 'NOACCT' | 'BLOCKED' | 'NOCREDIT'
-- @include _lib
local acct, sess, stream, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, req, shard, amount = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local units, etime, ttl, kind, need = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9]

local stored = redis.call('HGET', sess, 'o:' .. req)
if stored then return {'DUP', stored} end
if redis.call('EXISTS', acct) == 0 then return {'NOACCT', ''} end
if redis.call('HGET', acct, 'st') == 'blocked' and amount > 0 then return {'BLOCKED', ''} end
if need == '1' and amount > 0 then
  local avail = available(acct)
  if avail < amount then return {'NOCREDIT', tostring(avail)} end
end
set_context(sess, ARGV[10])
local bal = redis.call('HINCRBY', acct, 'bal', 0 - amount)
emit_usage(stream, seq, shard, sess, req, kind, units, units, amount, amount, bal, etime)
if kind == 'event' then
  emit_cdr(stream, seq, shard, sess, units, redis.call('HGET', sess, 'billed'), amount, 'event', etime)
end
local out = outcome('granted', units, 0, amount, 0, bal, 0)
redis.call('HSET', sess, 'closed', '1', 'rq', req, 'o:' .. req, out)
redis.call('EXPIRE', sess, ttl)
return {'OK', out}
