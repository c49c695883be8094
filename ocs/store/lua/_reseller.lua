-- _reseller.lua: the reseller leg of the charging scripts (docs/wholesale.md, "Resellers"), spliced
-- in after _lib by "-- @include _reseller".  Only sessions of a reseller's subscriber reach these:
-- Python passes the reseller's account key (or, for reap.lua, the session names its reseller);
-- a plain account's call takes each script's own path and pays one nil test.
--
-- The reseller is an account hash like any other (bal, rsv, cl, type, st).  It shares the
-- subscriber's hash tag (ocs/store/placement.py: a subscriber lives on its reseller's shard), so
-- the call stays in one slot on Redis Cluster and both balances move in this one atomic step.
-- Session fields of the leg: rs (the reseller, in the context), rchg (wholesale charged so far),
-- rhold (wholesale money held for the current grant).

-- A GrantPlan string (see _lib grant) as numbers.
local function rs_plan(packed)
  local P = split(packed, ',')
  for n = 1, #P do P[n] = tonumber(P[n]) end
  return P
end

-- Walk the blocks of plan P: the fewest blocks covering `units` (cover = true), or the most blocks
-- within `units` (cover = false).  Returns blocks, their units, hold (_lib grant's formula).
local function rs_blocks(P, units, cover)
  local fee, base, charged, per, maxb, nseg = P[1], P[2], P[3], P[4], P[5], P[6]
  local k, got, s = 0, 0, 0
  for j = 0, nseg - 1 do
    local u, rate, cnt = P[7 + 3 * j], P[8 + 3 * j], P[9 + 3 * j]
    if k + cnt > maxb then cnt = maxb - k end
    if cnt <= 0 or got >= units then break end
    local want
    if cover then want = math.ceil((units - got) / u) else want = math.floor((units - got) / u) end
    local take = math.min(cnt, want)
    k, got, s = k + take, got + take * u, s + take * u * rate
    if take < cnt then break end
  end
  if k == 0 then return 0, 0, 0 end
  return k, got, fee + rhu(base + s, per) - charged
end

-- 'BLOCKED' (blocked, or its hash gone), 'NOCREDIT' (not one wholesale block affordable), or nil.
-- rarg: "wholesale plan\31offset"; the offset is the subscriber's billed position minus the reseller's.
local function reseller_refusal(racct, rarg)
  local st = redis.call('HGET', racct, 'st')
  if not st or st == 'blocked' then return 'BLOCKED' end
  local avail = available(racct)  -- one value: a call as the last argument would pass all three
  local blocks = grant(split(rarg, '\31')[1], avail)
  if blocks == 0 then return 'NOCREDIT' end
  return nil
end

-- Cut the subscriber's grant (blocks, units, hold of its plan; `inc` of the units included seconds
-- of a bundle) to what the reseller's available money pays at its wholesale price, in whole blocks of
-- the subscriber's plan; a blocked reseller grants nothing more (not even what it has paid for).
-- Returns blocks, units, hold and the wholesale hold of those units (the fewest wholesale blocks
-- covering them).
local function reseller_cut(racct, plan, rarg, blocks, units, hold, inc)
  if not rarg or rarg == '' then return 0, 0, 0, 0 end  -- no wholesale plan: nothing more to grant
  local R = split(rarg, '\31')
  local W, off = rs_plan(R[1]), tonumber(R[2])
  if redis.call('HGET', racct, 'st') == 'blocked' then return 0, 0, 0, 0 end
  local ravail = available(racct)
  local wb, wu, _, wmax = grant(R[1], ravail)
  if wb < wmax and units + off > wu then
    local cover = math.max(0, wu - off)   -- subscriber units the reseller pays for
    local k, mu, mh = rs_blocks(rs_plan(plan), cover - math.min(inc, cover), false)
    blocks, units, hold = k, math.min(inc, cover) + mu, math.min(hold, mh)
  end
  if units <= 0 then return 0, 0, 0, 0 end
  local _, _, wh = rs_blocks(W, units + off, true)
  return blocks, units, hold, wh
end

-- The usage record and CDR this script writes carry the reseller and its money (_lib extra fields).
local function reseller_fields(rs, amount, charged)
  extra_usage = {'reseller', rs, 'reseller_amount', int(amount)}
  extra_cdr = {'reseller', rs, 'reseller_charge', int(charged)}
end

-- Charge the reseller up to its new wholesale total `rchg` of the session (never back: a total does
-- not go down) and release its hold.  `totals` may be nil where no hold can exist (orphans).
-- Returns the amount debited.
local function reseller_settle(racct, totals, sess, rchg)
  local r = redis.call('HMGET', sess, 'rs', 'rchg', 'rhold')
  local rhold = tonumber(r[3] or '0')
  if rhold ~= 0 and totals then move_hold(racct, totals, 0 - rhold) end
  local delta = math.max(0, rchg - tonumber(r[2] or '0'))
  if delta ~= 0 then redis.call('HINCRBY', racct, 'bal', 0 - delta) end
  redis.call('HSET', sess, 'rchg', int(math.max(rchg, tonumber(r[2] or '0'))), 'rhold', 0)
  reseller_fields(r[1], delta, math.max(rchg, tonumber(r[2] or '0')))
  return delta
end

-- Hold the wholesale price of the new grant on the reseller.
local function reseller_hold(racct, totals, sess, rhold)
  if rhold ~= 0 then move_hold(racct, totals, rhold) end
  redis.call('HSET', sess, 'rhold', rhold)
end

-- The reseller's account key, from the subscriber's (same hash tag, same slot): for reap.lua, whose
-- caller knows only the session.  `account_id` is the subscriber's id, `rs` the reseller's.
local function reseller_key(acct, account_id, rs)
  return string.sub(acct, 1, #acct - #account_id) .. rs
end
