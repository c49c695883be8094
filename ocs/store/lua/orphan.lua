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
-- ARGV[12] write a CDR when creating the tombstone ('1' on terminate)   ARGV[13] termination cause
-- ARGV[14] packed rating context for a new tombstone (as reserve.lua)
--
-- Returns {code, outcome}:
--   'OK'       charged; outcome status 'unknown_session'
--   'DUP'      request number already answered: stored outcome, nothing moved
--   'CONFLICT' the session is open, or moved since Python read it: nothing moved, retry
--   'NOACCT'   no such account: nothing moved
-- @include _lib
local acct, sess, stream, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, req, shard, expect = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local used, chg, billed, amount = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local units_now, etime, ttl, want_cdr, cause = ARGV[9], ARGV[10], tonumber(ARGV[11]), ARGV[12], ARGV[13]

local stored = redis.call('HGET', sess, 'o:' .. req)
if stored then return {'DUP', stored} end
if redis.call('EXISTS', acct) == 0 then return {'NOACCT', ''} end
local exists = redis.call('EXISTS', sess) == 1
if exists then
  if redis.call('HGET', sess, 'closed') ~= '1' then return {'CONFLICT', ''} end
  if (redis.call('HGET', sess, 'used') or '') ~= expect then return {'CONFLICT', ''} end
elseif expect ~= '' then
  return {'CONFLICT', ''}
else
  set_context(sess, ARGV[14])
  redis.call('HSET', sess, 'closed', '1', 'hold', 0, 'hunits', 0, 'born', now)
end

local bal = redis.call('HINCRBY', acct, 'bal', 0 - amount)
local s = redis.call('HMGET', sess, 'acct', 'sid', 'rg', 'proto', 'svc', 'cur', 'node')
emit(stream, seq, shard, '', {'t', 'u', 'account_id', s[1], 'session_id', s[2], 'rating_group', s[3],
  'request_number', req, 'kind', 'orphan', 'protocol', s[4], 'service', s[5], 'units', units_now,
  'used_total', used, 'amount', amount, 'charged_total', chg, 'balance_after', bal,
  'currency', s[6], 'event_time', etime, 'node', s[7]})
if not exists and want_cdr == '1' then
  local c = redis.call('HMGET', sess, 'calling', 'dest', 'prefix', 'dname', 't0')
  emit(stream, seq, shard, 'cdr:' .. s[2] .. ':' .. s[3], {'t', 'c', 'session_id', s[2],
    'rating_group', s[3], 'account', s[1], 'protocol', s[4], 'service', s[5], 'calling', c[1],
    'called', c[2], 'prefix', c[3], 'destination', c[4], 'start_time', c[5], 'duration', used,
    'billed_seconds', billed, 'charge', chg, 'currency', s[6], 'termination_cause', cause,
    'end_time', etime, 'node', s[7]})
end
local out = outcome('unknown_session', 0, 0, amount, 0, bal, 0)
redis.call('HSET', sess, 'used', used, 'chg', chg, 'billed', billed, 'rq', req, 'o:' .. req, out)
redis.call('EXPIRE', sess, ttl)
return {'OK', out}
