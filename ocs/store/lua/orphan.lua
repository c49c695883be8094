-- orphan.lua: charge usage reported for a session we do not hold open
-- (unknown, already terminated, or reaped): spec section 5, "A CCR-U/T for an
-- unknown or expired session charges its Used-Service-Unit and answers 5002".
-- Idempotent by request number through a closed tombstone session hash.
--
-- KEYS[1] account hash   KEYS[2] session hash   KEYS[3] shard usage stream   KEYS[4] shard sequence
-- ARGV[1] now (epoch ms)  ARGV[2] request number  ARGV[3] shard name
-- ARGV[4] expected used units of the tombstone ('' when Python saw no session)
-- ARGV[5] new used total  ARGV[6] new charged total  ARGV[7] new billed units
-- ARGV[8] amount to debit ARGV[9] units reported   ARGV[10] event time ISO   ARGV[11] TTL seconds
-- ARGV[12] write a CDR when creating the tombstone ('1' on terminate; an existing closed session's
--          CDR is always written again, brought up to date)   ARGV[13] termination cause
-- ARGV[14] packed rating context for a new tombstone (as reserve.lua)
-- ARGV[15] session's excess units after this request   ARGV[16] excess units of this request
--
-- KEYS[5] / ARGV[17] resellers (docs/wholesale.md "Resellers"; absent = the plain path): the reseller's
--          account hash and the session's new wholesale charged total; the reseller is debited the
--          difference with what the session had charged it (its usage record and the CDR say so)
--
-- Returns {code, outcome}:
--   'OK'       charged; outcome status 'unknown_session'
--   'DUP'      request number already answered: stored outcome, nothing moved
--   'CONFLICT' the session is open, or moved since Python read it: nothing moved, retry
--   'NOACCT'   no such account: nothing moved
-- @include _lib
-- @include _reseller
local acct, sess, stream, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, req, shard, expect = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local used, chg, billed, amount = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local units_now, etime, ttl, want_cdr, cause = ARGV[9], ARGV[10], tonumber(ARGV[11]), ARGV[12], ARGV[13]
local context, xs, excess = ARGV[14], ARGV[15], ARGV[16]
local racct, rchg = KEYS[5], ARGV[17]  -- resellers

local stored = answered(sess, req)
if stored then return {'DUP', stored} end
if redis.call('EXISTS', acct) == 0 then return {'NOACCT', ''} end
local exists = redis.call('EXISTS', sess) == 1
if exists then
  if redis.call('HGET', sess, 'closed') ~= '1' then return {'CONFLICT', ''} end
  if (redis.call('HGET', sess, 'used') or '') ~= expect then return {'CONFLICT', ''} end
elseif expect ~= '' then
  return {'CONFLICT', ''}
else
  set_context(sess, context)
  redis.call('HSET', sess, 'closed', '1', 'hold', 0, 'hunits', 0, 'born', now)
end

if racct then reseller_settle(racct, nil, sess, tonumber(rchg)) end  -- resellers: the wholesale debit
local bal = redis.call('HINCRBY', acct, 'bal', 0 - amount)
if excess ~= '0' then redis.call('HSET', sess, 'xs', xs) end
emit_usage(stream, seq, shard, sess, req, 'orphan', units_now, used, amount, chg, bal, etime, excess)
if exists then  -- a closed session charged again: its CDR is brought up to date (the cause it closed with stays)
  emit_cdr(stream, seq, shard, sess, used, billed, chg, redis.call('HGET', sess, 'cause') or cause, etime)
elseif want_cdr == '1' then
  emit_cdr(stream, seq, shard, sess, used, billed, chg, cause, etime)
end
local out = outcome('unknown_session', 0, 0, amount, 0, bal, 0)
redis.call('HSET', sess, 'used', used, 'chg', chg, 'billed', billed, 'rq', req, 'o:' .. req, out)
redis.call('EXPIRE', sess, ttl)
return {'OK', out}
