-- reserve.lua: open a session and reserve its first grant (initiate).
--
-- KEYS[1] account hash      KEYS[2] session hash      KEYS[3] shard expiry zset
-- KEYS[4] shard totals hash (field rsv: money reserved in the shard)
-- KEYS[5] the shard's set of sessions opened through this origin (NAS/peer)
-- KEYS[6] the set of rating groups other than 0 this session opened
-- KEYS[7] the account's set of open sessions (expiry members; server-initiated control walks it)
-- ARGV[1] now (epoch ms)    ARGV[2] request number    ARGV[3] expiry (epoch ms)
-- ARGV[4] validity seconds  ARGV[5] expiry zset member
-- ARGV[6] rating context stored on the session: "field\31value\31field\31value..."
-- ARGV[7] GrantPlan packed "fee,base_num,charged_base,per,max_blocks,nseg,triples..."
-- ARGV[8] seconds a refusal is remembered (its stored outcome answers retransmissions)
-- ARGV[9] '1': index the session under its origin (KEYS[5])   ARGV[10] rating group
-- ARGV[11] TTL of the rating-group set (KEYS[6])
-- ARGV[12] bundle (docs/wholesale.md "Bundles"): '' = none (the plain path), else
--          "period key\31quota\31cap": hold included seconds first, money for the rest of the cap
-- KEYS[8] / ARGV[13] resellers (docs/wholesale.md "Resellers"; absent = the plain path): the reseller's
--          account hash and "wholesale plan\31offset": a blocked reseller or one without credit for a
--          wholesale block refuses (BLOCKED / NOCREDIT); the grant is cut to what the reseller pays for
--          and the wholesale price of it is held on the reseller too (session field rhold)
--
-- Returns {code, outcome} with code:
--   'OK'       reserved; outcome = stored outcome string (see _lib.outcome)
--   'DUP'      this request number was already answered: its stored outcome, nothing moved
--   'EXISTS'   the session is open under another request number: nothing moved
--              (a closed session under the same key is replaced)
--   'NOACCT'   no such account: nothing stored, nothing moved
--   'BLOCKED'  account blocked          'NOCREDIT' less than one block affordable
--              (both: no money moved; the refusal is stored as this request number's outcome on a
--              closed session for ARGV[8] seconds, so a retransmission is refused identically even
--              if credit arrived meanwhile - RFC 4006 section 5.1, duplicate detection)
-- @include _lib
-- @include _reseller
local acct, sess, expiry, totals, by_origin, groups = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local live = KEYS[7]
local now, req, exp_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local validity, member, context, plan, refusal_ttl = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local has_origin, rg, groups_ttl = ARGV[9], ARGV[10], ARGV[11]
local bundle = ARGV[12]
local racct, rarg = KEYS[8], ARGV[13]  -- resellers

local stored = answered(sess, req)
if stored then return {'DUP', stored} end
local rev = nil
if redis.call('EXISTS', sess) == 1 then
  if redis.call('HGET', sess, 'closed') ~= '1' then return {'EXISTS', ''} end
  rev = redis.call('HGET', sess, 'cdrrev')  -- the new CDR of this key supersedes the old one
  redis.call('DEL', sess)  -- a closed session's key reused (RADIUS NAS|user|called): start afresh
end
if redis.call('EXISTS', acct) == 0 then return {'NOACCT', ''} end

local avail, bal, rsv = available(acct)
local function refuse(code, status)
  set_context(sess, context)
  local out = outcome(status, 0, 0, 0, 0, bal, 0)
  redis.call('HSET', sess, 'closed', '1', 'used', 0, 'chg', 0, 'billed', 0, 'hold', 0, 'hunits', 0,
    'rq', req, 'born', now, 'o:' .. req, out)
  if rev then redis.call('HSET', sess, 'cdrrev', rev) end
  redis.call('EXPIRE', sess, refusal_ttl)
  return {code, out}
end
if redis.call('HGET', acct, 'st') == 'blocked' then return refuse('BLOCKED', 'blocked') end
if racct then  -- resellers: refused before any hold (bundles' included seconds too) is taken
  local rcode = reseller_refusal(racct, rarg)
  if rcode == 'BLOCKED' then return refuse(rcode, 'blocked') end
  if rcode then return refuse(rcode, 'out_of_credit') end
end
local blocks, units, hold, maxb
local inc, B = 0, nil  -- bundles: included seconds held, the bundle argument split
if bundle == '' then
  blocks, units, hold, maxb = grant(plan, avail)
else
  B = split(bundle, '\31')
  inc, blocks, units, hold, maxb = bundle_grant(bundle_key(acct), B[1], tonumber(B[2]), tonumber(B[3]), plan, avail)
  units = units + inc
end
local rhold = 0  -- resellers: what the reseller pays for bounds the grant
if racct then blocks, units, hold, rhold = reseller_cut(racct, plan, rarg, blocks, units, hold, inc) end
if blocks == 0 and inc == 0 then return refuse('NOCREDIT', 'out_of_credit') end
local final = (blocks < maxb) and 1 or 0

move_hold(acct, totals, hold)
set_context(sess, context)
local out = outcome('granted', units, final, 0, hold, bal, validity)
redis.call('HSET', sess, 'used', 0, 'chg', 0, 'billed', 0, 'hold', hold, 'hunits', units,
  'rq', req, 'exp', exp_ms, 'born', now, 'o:' .. req, out)
if rev then redis.call('HSET', sess, 'cdrrev', rev) end
if B then redis.call('HSET', sess, 'bk', B[1], 'bq', B[2], 'ih', inc, 'iu', 0) end
if racct then reseller_hold(racct, totals, sess, rhold) end
redis.call('ZADD', expiry, exp_ms, member)
redis.call('SADD', live, member)
if has_origin == '1' then redis.call('SADD', by_origin, member) end
if rg ~= '0' then
  redis.call('SADD', groups, rg)
  redis.call('EXPIRE', groups, groups_ttl)
end
return {'OK', out}
