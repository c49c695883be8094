-- _lib.lua: shared functions, spliced into scripts by ocs/store/scripts.py at
-- every "-- @include _lib" line.  Not a script of its own.
--
-- Money is integer micro-units held in Lua numbers (doubles): exact below 2^53.
-- Write "0 - x", never "-x", for amounts sent to Redis: Lua turns -0 into "-0", which HINCRBY refuses.

-- An integer as its decimal digits.  Lua's own tostring (and `..`, table.concat) use "%.14g": from
-- 1e14 micro-units (100,000,000.00) on they write "1.00000001e+14", which no reader parses as an
-- integer.  Every number a script writes into a string goes through this.
local function int(n)
  return string.format('%d', n)
end

-- The stored outcome of a request number already answered on this session, or nil.  Every
-- script that answers a request checks it first: a retransmission is replayed, never re-run.
local function answered(sess, req)
  return redis.call('HGET', sess, 'o:' .. req)
end

-- Move `delta` (signed) into the money reserved on the account and in the shard's total
-- (field rsv of both; the shard total feeds the ocs_reserved_micros gauge without a SCAN).
local function move_hold(acct, totals, delta)
  redis.call('HINCRBY', acct, 'rsv', delta)
  redis.call('HINCRBY', totals, 'rsv', delta)
end

-- Close a session: no hold, out of the shard's expiry index and the account's open sessions
-- (`live`), kept `ttl` seconds as a tombstone (late reports for it are charged once as orphans,
-- by request number).
local function close_session(sess, expiry, member, ttl, live)
  redis.call('HSET', sess, 'closed', '1', 'hold', 0, 'hunits', 0)
  redis.call('ZREM', expiry, member)
  redis.call('SREM', live, member)
  redis.call('EXPIRE', sess, ttl)
end

-- round_half_up(n / d) for n >= 0, d > 0, exact for integers below 2^53.
local function rhu(n, d)
  local q = math.floor(n / d)
  local r = n - q * d
  if r < 0 then q = q - 1; r = r + d end
  if r >= d then q = q + 1; r = r - d end
  if 2 * r >= d then q = q + 1 end
  return q
end

-- available per spec section 4: prepaid never below 0; postpaid down to -credit_limit.
-- One HMGET, not four HGETs: each redis.call costs the script ~1-2 us.
local function available(acct)
  local a = redis.call('HMGET', acct, 'bal', 'rsv', 'cl', 'type')
  local bal, rsv, cl = tonumber(a[1] or '0'), tonumber(a[2] or '0'), tonumber(a[3] or '0')
  local avail
  if a[4] == 'postpaid' then
    avail = bal + cl - rsv
  else
    avail = bal - rsv
  end
  if avail < 0 then avail = 0 end
  return avail, bal, rsv
end

-- Split a packed argument (one ARGV instead of dozens: packing arguments is
-- the client's main cost per call).
local function split(s, sep)
  local out, pos = {}, 1
  if s == '' then return out end
  while true do
    local a = string.find(s, sep, pos, true)
    if not a then out[#out + 1] = string.sub(s, pos); return out end
    out[#out + 1] = string.sub(s, pos, a - 1)
    pos = a + 1
  end
end

-- HSET the "k\31v\31k\31v..." context string onto a session hash.
local function set_context(key, packed)
  local kv = split(packed, '\31')
  if #kv > 0 then redis.call('HSET', key, unpack(kv)) end
end

-- Bundles: how many whole blocks of the packed plan `P` (parsed) fit in `ucap` units.
local function blocks_within(P, nseg, ucap)
  local k, left = 0, ucap
  for j = 0, nseg - 1 do
    local u, cnt = P[7 + 3 * j], P[9 + 3 * j]
    local take = math.min(cnt, math.floor(left / u))
    k = k + take
    left = left - take * u
    if take < cnt then return k end
  end
  return k
end

-- Largest grant affordable within `avail` from a GrantPlan packed as one
-- comma-separated string: fee, base_num, charged_base, per, max_blocks, nseg,
-- then nseg triples (units_per_block, rate, count).
-- hold(k) = fee + rhu(base_num + S_k, per) - charged_base.
-- `ucap` (optional, bundles): at most this many units (the rest of a grant after included seconds;
-- may allow no block at all).
-- Returns blocks, units, hold, max_blocks.
local function grant(packed, avail, ucap)
  local P = split(packed, ',')
  for n = 1, #P do P[n] = tonumber(P[n]) end
  local fee, base, charged, per, maxb, nseg = P[1], P[2], P[3], P[4], P[5], P[6]
  if ucap then maxb = math.min(maxb, blocks_within(P, nseg, ucap)) end
  local function hold_at(s) return fee + rhu(base + s, per) - charged end
  local k, units, s, best = 0, 0, 0, 0
  for j = 0, nseg - 1 do
    local u, rate, cnt = P[7 + 3 * j], P[8 + 3 * j], P[9 + 3 * j]
    if k + cnt > maxb then cnt = maxb - k end
    if cnt <= 0 then break end
    local step = u * rate
    local h_end = hold_at(s + cnt * step)
    if h_end <= avail then
      k = k + cnt; units = units + cnt * u; s = s + cnt * step; best = h_end
    else
      local lo, hi = 0, cnt - 1   -- largest m in [0, cnt-1] with hold(k+m) <= avail
      while lo < hi do
        local mid = math.floor((lo + hi + 1) / 2)
        if hold_at(s + mid * step) <= avail then lo = mid else hi = mid - 1 end
      end
      if lo > 0 then best = hold_at(s + lo * step) end
      return k + lo, units + lo * u, (k + lo > 0) and best or 0, maxb
    end
  end
  return k, units, best, maxb
end

-- Append one record to the shard's usage stream; record_id '' = take the next seq.
local function emit(stream, seq, shard, record_id, fields)
  if record_id == '' then
    record_id = shard .. ':' .. int(redis.call('INCR', seq))
  end
  local args = {stream, '*', 'record_id', record_id}
  for n = 1, #fields do args[#args + 1] = fields[n] end
  redis.call('XADD', unpack(args))
  return record_id
end

-- Fields a script adds to the usage record / CDR it writes next (resellers: _reseller.lua sets them);
-- nil, the plain path, adds nothing.
local extra_usage, extra_cdr = nil, nil
local function add_extra(f, extra)
  if extra then for n = 1, #extra do f[#f + 1] = extra[n] end end
end

-- The usage record of one debit or credit (t=u); the session hash says whose and what.
-- `excess` (optional): units reported beyond grant + charging.max_overuse_seconds, not charged.
-- `included` (optional, bundles): units of this record covered by included seconds (not charged).
local function emit_usage(stream, seq, shard, sess, req, kind, units, used, amount, chg, bal, etime, excess,
                          included)
  local s = redis.call('HMGET', sess, 'acct', 'sid', 'rg', 'proto', 'svc', 'cur', 'node')
  local f = {'t', 'u', 'account_id', s[1], 'session_id', s[2], 'rating_group', s[3],
    'request_number', req, 'kind', kind, 'protocol', s[4], 'service', s[5], 'units', units,
    'used_total', used, 'amount', amount, 'charged_total', chg, 'balance_after', bal,
    'currency', s[6], 'event_time', etime, 'node', s[7]}
  if excess and excess ~= '0' then f[#f + 1] = 'excess_units'; f[#f + 1] = excess end
  if included and included > 0 then f[#f + 1] = 'included_units'; f[#f + 1] = int(included) end
  add_extra(f, extra_usage)
  emit(stream, seq, shard, '', f)
end

-- The CDR of a session and rating group (t=c, docs/provisioning.md).  Its record id is
-- cdr:<session>:<rating group>; `revision` counts the CDRs written for that key (kept across a
-- closed session's key being opened again), and PostgreSQL keeps the highest: a session charged
-- again after it closed (usage reported after the reaper released it, a RADIUS Start after its
-- hold expired) has its CDR brought up to date, and a replayed entry changes nothing.
local function emit_cdr(stream, seq, shard, sess, duration, billed, charge, cause, end_time)
  local s = redis.call('HMGET', sess, 'acct', 'sid', 'rg', 'proto', 'svc', 'cur', 'node',
    'calling', 'dest', 'prefix', 'dname', 't0', 'xs', 'ctl', 'tariff', 'tver',
    'iu')  -- s[17]: included seconds consumed (bundles)
  -- a session the OCS asked the network to end (ASR, Disconnect: field ctl) keeps that cause
  -- (ADMINISTRATIVE, CREDIT_LIMIT) whatever the client reports, also when the reaper closes it
  if s[14] then cause = s[14] end
  local rev = redis.call('HINCRBY', sess, 'cdrrev', 1)
  redis.call('HSET', sess, 'cause', cause)
  local f = {'t', 'c', 'session_id', s[2],
    'rating_group', s[3], 'account', s[1], 'protocol', s[4], 'service', s[5], 'calling', s[8],
    'called', s[9], 'prefix', s[10], 'destination', s[11], 'start_time', s[12], 'duration', duration,
    'billed_seconds', billed, 'charge', charge, 'currency', s[6], 'termination_cause', cause,
    'end_time', end_time, 'node', s[7], 'revision', int(rev), 'tariff', s[15] or '', 'tariff_version', s[16] or ''}
  if s[13] then f[#f + 1] = 'excess_units'; f[#f + 1] = s[13] end
  if s[17] then f[#f + 1] = 'included_seconds'; f[#f + 1] = s[17] end
  add_extra(f, extra_cdr)
  -- FX (docs/wholesale.md): the tariff's currency and the exact rate, on a session charged in another
  local fx = redis.call('HMGET', sess, 'fxcur', 'fx')
  if fx[2] then
    f[#f + 1] = 'rate_currency'; f[#f + 1] = fx[1] or ''; f[#f + 1] = 'fx_rate'; f[#f + 1] = fx[2]
  end
  emit(stream, seq, shard, 'cdr:' .. s[2] .. ':' .. s[3], f)
end

-- Stored outcome of one request: status|granted|final|charged|reserved|balance|validity
local function outcome(status, granted, final, charged, reserved, balance, validity)
  return table.concat({status, int(granted), int(final), int(charged), int(reserved), int(balance),
    int(validity)}, '|')
end

-- ---- Bundles: included voice seconds (docs/wholesale.md, "Bundles") ------------------------------
-- Only sessions that carry a bundle (Python passes a non-empty bundle argument) reach these.
-- The counters live in one hash next to the account hash, fields per period key pk
-- ("YYYY-MM:<product>"): q:pk quota, u:pk used, h:pk held.  Its name is derived from the account
-- key (same hash tag, so the same slot) instead of being passed: the plain path builds no extra key.
local function bundle_key(acct)
  return acct .. ':bun'
end

-- A new period's quota was just written: drop the fields of earlier months nobody holds seconds of
-- (their unused seconds lapse), and keep the hash no longer than a period and a straddling call.
local function bundle_lapse(bkey, pk)
  local month = string.sub(pk, 1, 7)
  for _, f in ipairs(redis.call('HKEYS', bkey)) do
    if string.sub(f, 1, 2) == 'q:' and string.sub(f, 3, 9) < month then
      local other = string.sub(f, 3)
      if tonumber(redis.call('HGET', bkey, 'h:' .. other) or '0') <= 0 then
        redis.call('HDEL', bkey, f, 'u:' .. other, 'h:' .. other)
      end
    end
  end
  redis.call('EXPIRE', bkey, 40 * 86400)
end

-- Hold up to `cap` included seconds of period pk (created full at `quota` on first use); returns
-- the seconds held (0 when the period is used up).
local function bundle_hold(bkey, pk, quota, cap)
  if redis.call('HSETNX', bkey, 'q:' .. pk, quota) == 1 then bundle_lapse(bkey, pk) end
  local v = redis.call('HMGET', bkey, 'q:' .. pk, 'u:' .. pk, 'h:' .. pk)
  local held = math.min(cap, tonumber(v[1]) - tonumber(v[2] or '0') - tonumber(v[3] or '0'))
  if held <= 0 then return 0 end
  redis.call('HINCRBY', bkey, 'h:' .. pk, held)
  return held
end

-- Included seconds first, then money for the rest of the cap (a grant may mix both).
-- Returns included, blocks, money units, money hold, max blocks (of the money part).
local function bundle_grant(bkey, pk, quota, cap, plan, avail)
  local inc = bundle_hold(bkey, pk, quota, cap)
  if inc == 0 then return 0, grant(plan, avail) end
  return inc, grant(plan, avail, cap - inc)
end

-- A session's included hold ends: `used` seconds of it are consumed, the rest goes back.
local function bundle_release(bkey, pk, held, used)
  if used > 0 then redis.call('HINCRBY', bkey, 'u:' .. pk, used) end
  if held > 0 then redis.call('HINCRBY', bkey, 'h:' .. pk, 0 - held) end
end
