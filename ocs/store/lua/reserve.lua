-- reserve.lua: open a session and reserve its first grant (initiate).
--
-- KEYS[1] account hash      KEYS[2] session hash      KEYS[3] shard expiry zset
-- KEYS[4] shard totals hash (field rsv: money reserved in the shard)
-- ARGV[1] now (epoch ms)    ARGV[2] request number    ARGV[3] expiry (epoch ms)
-- ARGV[4] validity seconds  ARGV[5] expiry zset member
-- ARGV[6] rating context stored on the session: "field\31value\31field\31value..."
-- ARGV[7] GrantPlan packed "fee,base_num,charged_base,per,max_blocks,nseg,triples..."
--
-- Returns {code, outcome} with code:
--   'OK'       reserved; outcome = stored outcome string (see _lib.outcome)
--   'DUP'      this request number was already answered: its stored outcome, nothing moved
--   'EXISTS'   the session is open under another request number: nothing moved
--              (a closed session under the same key is replaced)
--   'NOACCT'   no such account          'BLOCKED'  account blocked
--   'NOCREDIT' less than one block affordable: nothing stored, nothing moved
-- @include _lib
local acct, sess, expiry, totals = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, req, exp_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local validity, member, context, plan = ARGV[4], ARGV[5], ARGV[6], ARGV[7]

local stored = answered(sess, req)
if stored then return {'DUP', stored} end
if redis.call('EXISTS', sess) == 1 then
  if redis.call('HGET', sess, 'closed') ~= '1' then return {'EXISTS', ''} end
  redis.call('DEL', sess)  -- a closed session's key reused (RADIUS NAS|user|called): start afresh
end
if redis.call('EXISTS', acct) == 0 then return {'NOACCT', ''} end
if redis.call('HGET', acct, 'st') == 'blocked' then return {'BLOCKED', ''} end

local avail, bal, rsv = available(acct)
local blocks, units, hold, maxb = grant(plan, avail)
if blocks == 0 then return {'NOCREDIT', int(avail)} end
local final = (blocks < maxb) and 1 or 0

move_hold(acct, totals, hold)
set_context(sess, context)
local out = outcome('granted', units, final, 0, hold, bal, validity)
redis.call('HSET', sess, 'used', 0, 'chg', 0, 'billed', 0, 'hold', hold, 'hunits', units,
  'rq', req, 'exp', exp_ms, 'born', now, 'o:' .. req, out)
redis.call('ZADD', expiry, exp_ms, member)
return {'OK', out}
