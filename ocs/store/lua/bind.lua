-- bind.lua: re-key an open session (RADIUS: the hold made at Access-Request
-- under NAS|User-Name|Called-Station-Id is bound to the Acct-Session-Id at Start).
-- With the same old and new key (the Access-Request carried the Acct-Session-Id, so its hold
-- is already under the call's key) the session stays where it is and only its expiry moves.
--
-- KEYS[1] old session hash   KEYS[2] new session hash   KEYS[3] shard expiry zset
-- KEYS[4] the shard's set of sessions of the session's origin (the member moves with the key)
-- KEYS[5] the account's set of open sessions (the member moves with the key)
-- ARGV[1] old expiry member  ARGV[2] new expiry member  ARGV[3] new front-end session id
-- ARGV[4] new expiry (epoch ms): a bound call is held for the whole grant, not the start timeout
--
-- Returns 'OK' | 'NOOLD' (no open session under the old key) | 'EXISTS' (new key taken)
local old, new, expiry, by_origin, live = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local old_member, new_member, new_sid, exp_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', old) == 0 or redis.call('HGET', old, 'closed') == '1' then return 'NOOLD' end
if old == new then
  redis.call('HSET', new, 'exp', exp_ms)
  redis.call('ZADD', expiry, exp_ms, new_member)
  return 'OK'
end
if redis.call('EXISTS', new) == 1 then return 'EXISTS' end
redis.call('RENAME', old, new)
redis.call('HSET', new, 'sid', new_sid, 'exp', exp_ms)
redis.call('ZREM', expiry, old_member)
redis.call('ZADD', expiry, exp_ms, new_member)
if redis.call('SREM', by_origin, old_member) == 1 then redis.call('SADD', by_origin, new_member) end
redis.call('SREM', live, old_member)
redis.call('SADD', live, new_member)
return 'OK'
