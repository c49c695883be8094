-- import.lua: charge a batch of imported CDRs of one shard (mediation, docs/wholesale.md "Mediation").
-- Each record is charged like a finished session: one debit, its usage record and its CDR, in this
-- one atomic step, so no record without its money and no money without its record.
--
-- KEYS[1] shard usage stream   KEYS[2] the run's marker set for this shard   KEYS[3..] account hashes
-- ARGV[1] node name   ARGV[2] account ids, \31-separated, in the order of KEYS[3..]
-- ARGV[3] records, \30-separated; each \31-separated:
--   account index (into KEYS), key, session id, calling, called, prefix, destination, start ISO,
--   end ISO, duration, billed seconds, charge, currency, tariff, tariff version, protocol, cause,
--   rate currency and FX rate ('' unless the account pays in another currency than its tariff's);
--   a reseller's subscriber only: the reseller's index (into KEYS) and its wholesale charge
--
-- Idempotent per record: the marker set holds the key of every record this run charged, so a
-- batch sent again (a lost reply, a retry) charges nothing twice.  The set outlives a crash and
-- tells the next import which records were charged (ocs/mediation/importer.py, "repair").
--
-- The call already happened: the debit is made whatever the balance (it may go negative, like
-- usage beyond a grant).  A blocked account's record is refused, and so is one of an account
-- with bundles (field bun: included seconds): that leg is the charging scripts'.  A reseller's
-- subscriber (field rs) is debited and its reseller too, at the wholesale charge Python rated, in
-- this same step (the reseller's hash shares the subscriber's hash tag, ocs/store/placement.py);
-- a blocked (or vanished) reseller refuses the record, as it refuses its subscribers' calls.
--
-- Returns one character per record: 'O' charged, 'D' already charged by this run, 'N' no such
-- account, 'B' account blocked, 'U' account has bundles, 'R' the account's reseller is not the
-- one the record was rated for, 'S' its reseller is blocked.
-- @include _lib
local stream, marks = KEYS[1], KEYS[2]
local node = ARGV[1]
local ids = split(ARGV[2], '\31')
local recs = split(ARGV[3], '\30')
local codes = {}
for i = 1, #recs do
  local f = split(recs[i], '\31')
  local n = tonumber(f[1])
  local acct, key = KEYS[n + 2], f[2]
  local code = 'O'
  if redis.call('SISMEMBER', marks, key) == 1 then
    code = 'D'
  else
    local a = redis.call('HMGET', acct, 'type', 'st', 'bun', 'rs')
    if not a[1] then
      code = 'N'
    elseif a[2] == 'blocked' then
      code = 'B'
    elseif a[3] and a[3] ~= '' then
      code = 'U'
    elseif (a[4] or '') ~= (f[20] and ids[tonumber(f[20])] or '') then
      code = 'R'
    elseif f[20] then
      local st = redis.call('HGET', KEYS[tonumber(f[20]) + 2], 'st')
      if not st or st == 'blocked' then code = 'S' end
    end
  end
  if code == 'O' then
    local account, sid = ids[n], f[3]
    local bal = redis.call('HINCRBY', acct, 'bal', 0 - tonumber(f[12]))
    -- rating_group and request_number are left out: 0, the flusher's default for them
    local rs = f[20] and ids[tonumber(f[20])]
    if not rs then
      redis.call('XADD', stream, '*', 'record_id', sid, 't', 'u', 'account_id', account, 'session_id', sid,
        'kind', 'import', 'protocol', f[16], 'service', 'voice', 'units', f[10], 'used_total', f[10],
        'amount', f[12], 'charged_total', f[12], 'balance_after', int(bal), 'currency', f[13],
        'event_time', f[9], 'node', node)
    else  -- the reseller's leg: its wholesale debit, said by the usage record and the CDR
      redis.call('HINCRBY', KEYS[tonumber(f[20]) + 2], 'bal', 0 - tonumber(f[21]))
      redis.call('XADD', stream, '*', 'record_id', sid, 't', 'u', 'account_id', account, 'session_id', sid,
        'kind', 'import', 'protocol', f[16], 'service', 'voice', 'units', f[10], 'used_total', f[10],
        'amount', f[12], 'charged_total', f[12], 'balance_after', int(bal), 'currency', f[13],
        'event_time', f[9], 'node', node, 'reseller', rs, 'reseller_amount', f[21])
    end
    if f[18] == '' and not rs then  -- the plain path: one call, no table built
      redis.call('XADD', stream, '*', 'record_id', 'cdr:' .. sid .. ':0', 't', 'c', 'session_id', sid,
        'account', account, 'protocol', f[16], 'service', 'voice', 'calling', f[4], 'called', f[5],
        'prefix', f[6], 'destination', f[7], 'start_time', f[8], 'duration', f[10], 'billed_seconds', f[11],
        'charge', f[12], 'currency', f[13], 'termination_cause', f[17], 'end_time', f[9], 'node', node,
        'revision', '1', 'tariff', f[14], 'tariff_version', f[15])
    else  -- FX: the rate and the tariff's currency too; a reseller: it and its wholesale charge
      local c = {'record_id', 'cdr:' .. sid .. ':0', 't', 'c', 'session_id', sid,
        'account', account, 'protocol', f[16], 'service', 'voice', 'calling', f[4], 'called', f[5],
        'prefix', f[6], 'destination', f[7], 'start_time', f[8], 'duration', f[10], 'billed_seconds', f[11],
        'charge', f[12], 'currency', f[13], 'termination_cause', f[17], 'end_time', f[9], 'node', node,
        'revision', '1', 'tariff', f[14], 'tariff_version', f[15]}
      if f[18] ~= '' then
        for _, v in ipairs({'rate_currency', f[18], 'fx_rate', f[19]}) do c[#c + 1] = v end
      end
      if rs then
        for _, v in ipairs({'reseller', rs, 'reseller_charge', f[21]}) do c[#c + 1] = v end
      end
      redis.call('XADD', stream, '*', unpack(c))
    end
    redis.call('SADD', marks, key)
  end
  codes[i] = code
end
return table.concat(codes)
