-- reap.lua: release the hold of a session silent past validity + grace.
-- Safe on every daemon at once: the expiry is re-checked atomically, so a
-- session refreshed in the meantime, or already reaped, is left alone.
-- The session is closed with a CDR (termination_cause 'expired') of the usage
-- charged so far; late reports for it are charged as orphans (orphan.lua).
--
-- KEYS[1] account hash   KEYS[2] session hash   KEYS[3] shard expiry zset
-- KEYS[4] shard usage stream   KEYS[5] shard sequence   KEYS[6] shard totals hash
-- KEYS[7] the account's set of open sessions
-- ARGV[1] now (epoch ms)  ARGV[2] expiry zset member  ARGV[3] shard name
-- ARGV[4] now as ISO 8601 UTC   ARGV[5] tombstone TTL seconds
--
-- Resellers (docs/wholesale.md): a session of a reseller's subscriber (field rs) releases the reseller's
-- hold too; the reseller's key is derived from KEYS[1] (same hash tag, same slot: _reseller.lua).
--
-- Returns {code, released amount}: 'REAPED' | 'ALIVE' (refreshed, kept) | 'GONE' (no open session)
-- @include _lib
-- @include _reseller
local acct, sess, expiry, stream, seq, totals, live = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now, member, shard, iso, ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])

if redis.call('EXISTS', sess) == 0 or redis.call('HGET', sess, 'closed') == '1' then
  redis.call('ZREM', expiry, member)
  redis.call('SREM', live, member)
  return {'GONE', 0}
end
local exp_ms = tonumber(redis.call('HGET', sess, 'exp') or '0')
if exp_ms > now then
  redis.call('ZADD', expiry, exp_ms, member)
  return {'ALIVE', 0}
end
local hold = tonumber(redis.call('HGET', sess, 'hold') or '0')
move_hold(acct, totals, 0 - hold)
-- bundles: the included seconds the session held go back (none consumed: no usage was reported)
local bun = redis.call('HMGET', sess, 'bk', 'ih')
if bun[1] then
  bundle_release(bundle_key(acct), bun[1], tonumber(bun[2] or '0'), 0)
  redis.call('HSET', sess, 'ih', 0)
end
local rsl = redis.call('HMGET', sess, 'rs', 'acct', 'rchg')  -- resellers: its hold goes back, the CDR says its charge
if rsl[1] then reseller_settle(reseller_key(acct, rsl[2], rsl[1]), totals, sess, tonumber(rsl[3] or '0')) end
local so_far = redis.call('HMGET', sess, 'used', 'billed', 'chg')
emit_cdr(stream, seq, shard, sess, so_far[1], so_far[2], so_far[3], 'expired', iso)
close_session(sess, expiry, member, ttl, live)
return {'REAPED', hold}
