-- bind.lua: re-key an open session (RADIUS: the hold made at Access-Request
-- under NAS|User-Name|Called-Station-Id is bound to the Acct-Session-Id at Start).
--
-- KEYS[1] old session hash   KEYS[2] new session hash   KEYS[3] shard expiry zset
-- ARGV[1] old expiry member  ARGV[2] new expiry member  ARGV[3] new front-end session id
-- ARGV[4] new expiry (epoch ms): a bound call is held for the whole grant, not the start timeout
--
-- Returns 'OK' | 'NOOLD' (no open session under the old key) | 'EXISTS' (new key taken)
local old, new, expiry = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', old) == 0 or redis.call('HGET', old, 'closed') == '1' then return 'NOOLD' end
if redis.call('EXISTS', new) == 1 then return 'EXISTS' end
redis.call('RENAME', old, new)
redis.call('HSET', new, 'sid', ARGV[3], 'exp', ARGV[4])
redis.call('ZREM', expiry, ARGV[1])
redis.call('ZADD', expiry, ARGV[4], ARGV[2])
return 'OK'
