-- debit.lua: charge reported usage cumulatively, then re-reserve (update) or
-- release and close (terminate).  One call, so a debit never exists without
-- its usage record and a request number is never charged twice.
--
-- KEYS[1] account hash   KEYS[2] session hash   KEYS[3] shard expiry zset
-- KEYS[4] shard usage stream   KEYS[5] shard record sequence   KEYS[6] shard totals hash
-- KEYS[7] the shard's set of sessions of the session's origin (left on terminate)
-- KEYS[8] the account's set of open sessions (left on terminate)
-- ARGV[1] now (epoch ms)  ARGV[2] request number  ARGV[3] expiry (epoch ms)
-- ARGV[4] validity seconds   ARGV[5] expiry zset member   ARGV[6] shard name
-- ARGV[7] expected used units (CAS: the state Python rated from)
-- ARGV[8] new used total  ARGV[9] new charged total  ARGV[10] new billed units
-- ARGV[11] mode: 'update' | 'terminate'   ARGV[12] termination cause
-- ARGV[13] event time (ISO 8601 UTC, for records)   ARGV[14] units reported by this request
-- ARGV[15] tombstone TTL seconds (terminate)
-- ARGV[16] packed GrantPlan for the next grant (update only; '' on terminate)
-- ARGV[17] session's excess units after this request (field xs: reported beyond grant + overuse cap)
-- ARGV[18] excess units of this request ('0' when none), written on its usage record
-- ARGV[19] bundle (session opened with one; docs/wholesale.md "Bundles"): '' = none (the plain path),
--          else "cap\31included total": the usage since the last report is covered by the session's
--          included hold first; Python rated the money part from the included total it expects
--          (CONFLICT when the session's says otherwise); update holds included seconds again first
-- KEYS[9] / ARGV[20] / ARGV[21] resellers (docs/wholesale.md "Resellers"; absent = the plain path): the
--          reseller's account hash, the session's new wholesale charged total (Python rated it
--          cumulatively like the subscriber's), and for update "wholesale plan\31offset": the reseller is
--          debited the difference with the subscriber (its usage record and the CDR say so), its hold is
--          released, and the next grant is cut to what it pays for and held on it too
--
-- Returns {code, outcome}:
--   'OK'        done; outcome = stored outcome string
--   'DUP'       request number already answered: stored outcome, nothing moved
--   'NOSESSION' no session / session closed: nothing moved (caller charges it as orphan)
--   'CONFLICT'  the session moved since Python read it: nothing moved, re-read and retry
-- @include _lib
-- @include _reseller
local acct, sess, expiry, stream, seq, totals, by_origin = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6],
  KEYS[7]
local live = KEYS[8]
local now, req, exp_ms, validity, member, shard = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local expect, used, chg, billed = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
local mode, cause, etime, units_now, ttl = ARGV[11], ARGV[12], ARGV[13], ARGV[14], tonumber(ARGV[15])
local plan, xs, excess = ARGV[16], ARGV[17], ARGV[18]
local bundle = ARGV[19]
local racct, rchg, rarg = KEYS[9], ARGV[20], ARGV[21]  -- resellers

-- what the checks and the money step read of the session, in one HMGET (was six commands)
local head = redis.call('HMGET', sess, 'o:' .. req, 'closed', 'used', 'hold', 'chg')
if head[1] then return {'DUP', head[1]} end
if head[2] == '1' then return {'NOSESSION', ''} end
if not head[3] then  -- no used total: no session hash at all, or one that is no open session
  if redis.call('EXISTS', sess) == 0 then return {'NOSESSION', ''} end
  return {'CONFLICT', ''}
end
if head[3] ~= expect then return {'CONFLICT', ''} end

-- bundles: consume the included hold for the new usage and release the rest (before any money moves)
local B, bk, bpk, bquota, inc_now = nil, nil, nil, nil, 0
if bundle ~= '' then
  B = split(bundle, '\31')
  local b = redis.call('HMGET', sess, 'bk', 'bq', 'ih', 'iu')
  local held = tonumber(b[3] or '0')
  inc_now = math.max(0, math.min(used - tonumber(expect), held))
  if tonumber(b[4] or '0') + inc_now ~= tonumber(B[2]) then return {'CONFLICT', ''} end
  bk, bpk, bquota = bundle_key(acct), b[1], tonumber(b[2])
  bundle_release(bk, bpk, held, inc_now)
  redis.call('HSET', sess, 'iu', B[2], 'ih', 0)
end

if racct then reseller_settle(racct, totals, sess, tonumber(rchg)) end  -- resellers: the wholesale debit

local old_hold = tonumber(head[4] or '0')  -- neither the bundle nor the reseller step writes hold or chg
local delta = chg - tonumber(head[5] or '0')
move_hold(acct, totals, 0 - old_hold)
local bal = redis.call('HINCRBY', acct, 'bal', 0 - delta)
if excess ~= '0' then redis.call('HSET', sess, 'xs', xs) end
emit_usage(stream, seq, shard, sess, req, mode, units_now, used, delta, chg, bal, etime, excess, inc_now)
redis.call('HSET', sess, 'used', used, 'chg', chg, 'billed', billed, 'hold', 0, 'hunits', 0,
  'rq', req, 'last', now)

if mode == 'terminate' then
  emit_cdr(stream, seq, shard, sess, used, billed, chg, cause, etime)
  local out = outcome('granted', 0, 0, delta, 0, bal, 0)
  redis.call('HSET', sess, 'o:' .. req, out)
  close_session(sess, expiry, member, ttl, live)
  redis.call('SREM', by_origin, member)
  return {'OK', out}
end

local avail = available(acct)
local blocks, units, hold, maxb
local inc = 0  -- bundles: included seconds held for the next grant
if B then
  inc, blocks, units, hold, maxb = bundle_grant(bk, bpk, bquota, tonumber(B[1]), plan, avail)
  units = units + inc
  redis.call('HSET', sess, 'ih', inc)
else
  blocks, units, hold, maxb = grant(plan, avail)
end
if racct then  -- resellers: the next grant is what both pay for; the reseller holds its wholesale price
  local rhold
  blocks, units, hold, rhold = reseller_cut(racct, plan, rarg, blocks, units, hold, inc)
  reseller_hold(racct, totals, sess, rhold)
end
local final = (blocks < maxb) and 1 or 0
local status = 'granted'
if blocks == 0 and inc == 0 then status = 'out_of_credit' end
move_hold(acct, totals, hold)
local out = outcome(status, units, final, delta, hold, bal, validity)
redis.call('HSET', sess, 'hold', hold, 'hunits', units, 'exp', exp_ms, 'o:' .. req, out)
redis.call('ZADD', expiry, exp_ms, member)
return {'OK', out}
