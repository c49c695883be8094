-- mark.lua: remember on an open session why the OCS asked the network to end it (field ctl).
-- emit_cdr (_lib.lua) writes that cause on the session's record, whoever closes it later:
-- the client's CCR-T or Accounting-Stop, Accounting-On/Off, or the reaper when nothing came.
--
-- KEYS[1] session hash   ARGV[1] cause ('ADMINISTRATIVE' | 'CREDIT_LIMIT')
--
-- Returns 'OK' (marked; a session marked before keeps its first cause) | 'GONE' (no open session)
local sess, cause = KEYS[1], ARGV[1]
if redis.call('EXISTS', sess) == 0 or redis.call('HGET', sess, 'closed') == '1' then return 'GONE' end
redis.call('HSETNX', sess, 'ctl', cause)
return 'OK'
