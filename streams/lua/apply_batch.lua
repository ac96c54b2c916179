-- apply_batch.lua: apply one batch of one event tree, atomically.
--
-- KEYS and ARGV are laid out by streams/script.py (see its docstring), which
-- also writes the record and sale field indexes (NF, R_*, S_*) in place of the
-- "@layout" line below; the caller is streams/apply.py. For each record, in order:
--   offset <= fence[partition]           -> duplicate:offset (a re-delivery)
--   rejected before Redis (op 'x')       -> rejected:<reason>
--   (ikm, sale_id) already in the sales hash
--                                        -> duplicate:sale_id if event, amount, kind
--                                           and refund_of are equal, else
--                                           rejected:sale_id_conflict
--   refund: (ikm, refund_of) missing     -> rejected:unknown_refund_target
--           target not a sale of the same event -> rejected:refund_mismatch
--           cumulative refunds above the sale's amount or quantity
--                                        -> rejected:refund_exceeds_sale
--   otherwise                            -> applied: totals of the event and every
--                                           ancestor, their day buckets, IKM totals,
--                                           board and ticker
-- Increments are summed in Lua tables and written once per field at the end with
-- HINCRBY; every changed totals hash gets version + 1 and as_of once per call.
-- The sales hash is read once (HMGET of every sale_id and refund_of the batch
-- needs) and written once at the end, through a table that the records of the
-- batch read and update in order. Its fields are "<ikm>|<sale_id>": a sale_id is
-- unique per IKM, the Kafka key, so every ledger decision depends only on the
-- order within one partition, never on how partitions interleave (and
-- `rekap reconcile`'s partition-by-partition fold reaches the same result).
-- ARGV[7] is the records' fields as one JSON array of strings (cjson-decoded
-- here: one ARGV value instead of NF per record).
-- ARGV[8] is a JSON array of strings, three per partition of the batch:
-- partition, expected fence, batch end. Progress lives with the data: before
-- anything is written, each partition's fence must be at least the fence the
-- worker last saw (expected; -1 when it knows nothing). A lower fence means
-- Redis lost writes (a restart without persistence, a failover to a lagging
-- replica): the script then writes nothing and returns {"lost": [partition,
-- fence, ...]}, and the worker re-applies the ledger from the fences. Otherwise
-- every listed partition's fence ends at the batch end (or higher), also when
-- this tree has no record of it in the batch: the batch holds every record of
-- the partition up to there, so none of this tree's is missing below it.
-- Every check happens before the first write, so a failing call changes nothing.
-- Returns one JSON string: [[outcome, detail, ...], [totals of event 0..E-1 as
-- HGETALL arrays], [totals of pair 0..P-1], [partition, fence, ...]] (an empty
-- array may come back as {}).

-- @layout
local as_of = ARGV[1]
local topic = ARGV[2]
local ticker_len = tonumber(ARGV[3])
local n_events = tonumber(ARGV[4])
local n_pairs = tonumber(ARGV[5])
local n_records = tonumber(ARGV[6])
local A = cjson.decode(ARGV[7])
local PF = cjson.decode(ARGV[8])

local K_FENCE, K_STATS, K_SALES, K_REJECTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local EV0 = 5
local PAIR0 = 5 + 4 * n_events
-- Values per HMGET/HSET/LPUSH call (Lua's unpack limit is about 8000).
local CHUNK = 1000

local tonumber = tonumber
local call, unpack, sfind, ssub = redis.call, unpack, string.find, string.sub

local function fmt(n) return string.format("%d", n) end

local function split(s, sep)
  local out, start = {}, 1
  while true do
    local i = sfind(s, sep, start, true)
    if not i then
      out[#out + 1] = ssub(s, start)
      return out
    end
    out[#out + 1] = ssub(s, start, i - 1)
    start = i + 1
  end
end

local ints_cache = {}
local function ints(csv)
  local out = ints_cache[csv]
  if out then return out end
  out = {}
  if csv ~= "" then
    for _, v in ipairs(split(csv, ",")) do out[#out + 1] = tonumber(v) end
  end
  ints_cache[csv] = out
  return out
end

local deltas = {}      -- key -> field -> integer delta
local delta_order = {}
local changed = {}     -- totals key -> true
local board = {}       -- board key -> member -> delta
local tickers = {}     -- ticker key -> list of JSON, oldest first
local last_sale = {}   -- ikm totals key -> {at, id, amount}
local stats = {}
local fences = {}
local new_fence = {}

local function table_in(parent, key)
  local t = parent[key]
  if t == nil then
    t = {}
    parent[key] = t
  end
  return t
end

local function fields_of(key)
  local t = deltas[key]
  if t == nil then
    t = {}
    deltas[key] = t
    delta_order[#delta_order + 1] = key
  end
  return t
end

local function fence_of(p)
  local f = fences[p]
  if f == nil then
    local v = call("HGET", K_FENCE, p)
    f = v and tonumber(v) or -1
    fences[p] = f
  end
  return f
end

do  -- Redis must still hold what the worker saw it hold
  local lost = {}
  for i = 1, #PF, 3 do
    local f = fence_of(PF[i])
    if f < tonumber(PF[i + 1]) then
      lost[#lost + 1] = PF[i]
      lost[#lost + 1] = fmt(f)
    end
  end
  if #lost > 0 then return cjson.encode({ lost = lost }) end
end

local function sale_field(ikm, id) return ikm .. "|" .. id end

-- The sales hash as this batch sees it: "<ikm>|<sale_id>" -> packed record, false if absent.
local sales = {}
local sales_dirty, sales_dirty_order = {}, {}

local function sale_of(id)
  local v = sales[id]
  if v == nil then
    v = call("HGET", K_SALES, id)
    sales[id] = v
  end
  return v
end

local function put_sale(id, packed)
  sales[id] = packed
  if not sales_dirty[id] then
    sales_dirty[id] = true
    sales_dirty_order[#sales_dirty_order + 1] = id
  end
end

do  -- read every sale_id and refund target the unfenced records name, at once
  local want, seen = {}, {}
  for r = 0, n_records - 1 do
    local b = r * NF
    if A[b + R_OP] ~= "x" and tonumber(A[b + R_OFFSET]) > fence_of(A[b + R_PARTITION]) then
      local id = sale_field(A[b + R_IKM_ID], A[b + R_SALE_ID])
      if not seen[id] then seen[id] = true; want[#want + 1] = id end
      if A[b + R_OP] == "r" then
        id = sale_field(A[b + R_IKM_ID], A[b + R_REFUND_OF])
        if not seen[id] then seen[id] = true; want[#want + 1] = id end
      end
    end
  end
  for i = 1, #want, CHUNK do
    local last = math.min(i + CHUNK - 1, #want)
    local values = call("HMGET", K_SALES, unpack(want, i, last))
    for j = i, last do sales[want[j]] = values[j - i + 1] end
  end
end

-- Field names, built once per channel and per day.
local ch_names = {}
local function channel_names(channel)
  local t = ch_names[channel]
  if t == nil then
    local c = "ch:" .. channel .. ":"
    t = { c .. "amount_idr", c .. "count", c .. "refunds_idr" }
    ch_names[channel] = t
  end
  return t
end
local day_names = {}
local function day_fields(day)
  local t = day_names[day]
  if t == nil then
    t = { day .. ":amount_idr", day .. ":count", day .. ":quantity", day .. ":refunds_idr" }
    day_names[day] = t
  end
  return t
end

local function book_totals(k, is_sale, signed, amount, qty, ch)
  changed[k] = true
  local t = fields_of(k)
  t.amount_idr = (t.amount_idr or 0) + signed
  t[ch[1]] = (t[ch[1]] or 0) + signed
  if is_sale then
    t.gross_idr = (t.gross_idr or 0) + amount
    t.count = (t.count or 0) + 1
    t.quantity = (t.quantity or 0) + qty
    t[ch[2]] = (t[ch[2]] or 0) + 1
  else
    t.refunds_idr = (t.refunds_idr or 0) + amount
    t.refund_count = (t.refund_count or 0) + 1
    t.quantity = (t.quantity or 0) - qty
    t[ch[3]] = (t[ch[3]] or 0) + amount
  end
end

local function book_day(k, is_sale, signed, amount, qty, d)
  local t = fields_of(k)
  t[d[1]] = (t[d[1]] or 0) + signed
  if is_sale then
    t[d[2]] = (t[d[2]] or 0) + 1
    t[d[3]] = (t[d[3]] or 0) + qty
  else
    t[d[4]] = (t[d[4]] or 0) + amount
    t[d[3]] = (t[d[3]] or 0) - qty
  end
end

local function apply_sale(b, op)
  local sale_id, ikm, event = A[b + R_SALE_ID], A[b + R_IKM_ID], A[b + R_EVENT_ID]
  local channel, day = A[b + R_CHANNEL], A[b + R_DAY]
  local amount, qty = tonumber(A[b + R_AMOUNT_IDR]), tonumber(A[b + R_QUANTITY])
  local refund_of = A[b + R_REFUND_OF]
  local is_sale = op == "s"
  local kind = is_sale and "sale" or "refund"

  local field = sale_field(ikm, sale_id)
  local existing = sale_of(field)
  if existing then
    local e = split(existing, "|")
    if e[S_EVENT_ID] == event and tonumber(e[S_AMOUNT_IDR]) == amount and e[S_KIND] == kind
        and e[S_REFUND_OF] == refund_of then
      return "duplicate:sale_id", "sale_id " .. sale_id .. " was applied before"
    end
    return "rejected:sale_id_conflict", "sale_id " .. sale_id .. " of " .. ikm
      .. " is already used by a " .. e[S_KIND] .. " in " .. e[S_EVENT_ID] .. " for "
      .. e[S_AMOUNT_IDR] .. " IDR"
  end

  if not is_sale then
    local target_field = sale_field(ikm, refund_of)
    local target = sale_of(target_field)
    if not target then
      return "rejected:unknown_refund_target", "refund_of " .. refund_of
        .. " is not an applied sale of " .. ikm
    end
    local s = split(target, "|")
    if s[S_KIND] ~= "sale" or s[S_EVENT_ID] ~= event then
      return "rejected:refund_mismatch", "refund_of " .. refund_of .. " is a " .. s[S_KIND]
        .. " of " .. ikm .. " in " .. s[S_EVENT_ID] .. ", not a sale in " .. event
    end
    local refunded = tonumber(s[S_REFUNDED_IDR]) + amount
    local refunded_qty = tonumber(s[S_REFUNDED_QUANTITY]) + qty
    if refunded > tonumber(s[S_AMOUNT_IDR]) or refunded_qty > tonumber(s[S_QUANTITY]) then
      return "rejected:refund_exceeds_sale", "refunds of " .. refund_of .. " would total "
        .. fmt(refunded) .. " IDR / " .. fmt(refunded_qty) .. " units, the sale was "
        .. s[S_AMOUNT_IDR] .. " IDR / " .. s[S_QUANTITY] .. " units"
    end
    s[S_REFUNDED_IDR] = fmt(refunded)
    s[S_REFUNDED_QUANTITY] = fmt(refunded_qty)
    put_sale(target_field, table.concat(s, "|"))
    -- A refund is booked where its sale was: the sale's channel and local day.
    channel, day = s[S_CHANNEL], s[S_DAY]
  end
  local booked = {}
  booked[S_IKM_ID], booked[S_EVENT_ID], booked[S_CHANNEL], booked[S_DAY] = ikm, event, channel, day
  booked[S_AMOUNT_IDR], booked[S_QUANTITY] = fmt(amount), fmt(qty)
  booked[S_REFUNDED_IDR], booked[S_REFUNDED_QUANTITY] = "0", "0"
  booked[S_KIND], booked[S_REFUND_OF] = kind, refund_of
  put_sale(field, table.concat(booked, "|"))

  local evs, prs = ints(A[b + R_CHAIN_EVENTS]), ints(A[b + R_CHAIN_PAIRS])
  local ch, d = channel_names(channel), day_fields(day)
  local signed = is_sale and amount or -amount
  local ticker_json = A[b + R_TICKER]
  for j = 1, #evs do
    local eb = EV0 + 4 * evs[j]
    local pb = PAIR0 + 2 * prs[j]
    book_totals(KEYS[eb], is_sale, signed, amount, qty, ch)
    book_totals(KEYS[pb], is_sale, signed, amount, qty, ch)
    book_day(KEYS[eb + 1], is_sale, signed, amount, qty, d)
    book_day(KEYS[pb + 1], is_sale, signed, amount, qty, d)
    local members = table_in(board, KEYS[eb + 2])
    members[ikm] = (members[ikm] or 0) + signed
    local list = table_in(tickers, KEYS[eb + 3])
    list[#list + 1] = ticker_json
    if is_sale then
      last_sale[KEYS[pb]] = { A[b + R_OCCURRED_AT], sale_id, amount }
    end
  end
  return "applied", ""
end

local outcomes = {}
for r = 0, n_records - 1 do
  local b = r * NF
  local part, off_text, op = A[b + R_PARTITION], A[b + R_OFFSET], A[b + R_OP]
  local off = tonumber(off_text)
  local outcome, detail
  if off <= fence_of(part) then
    outcome = "duplicate:offset"
    detail = call("HGET", K_REJECTS, topic .. "/" .. part .. "/" .. off_text) or ""
  else
    if (new_fence[part] or -1) < off then new_fence[part] = off end
    if op == "x" then
      outcome, detail = "rejected:" .. A[b + R_TICKER], ""
    else
      outcome, detail = apply_sale(b, op)
      if ssub(outcome, 1, 9) == "rejected:" then
        call("HSET", K_REJECTS, topic .. "/" .. part .. "/" .. off_text,
          ssub(outcome, 10) .. " " .. detail)
      end
    end
  end
  stats[outcome] = (stats[outcome] or 0) + 1
  outcomes[#outcomes + 1] = outcome
  outcomes[#outcomes + 1] = detail
end

local function hset_all(key, args)
  for i = 1, #args, CHUNK do
    call("HSET", key, unpack(args, i, math.min(i + CHUNK - 1, #args)))
  end
end

do
  local args = {}
  for _, id in ipairs(sales_dirty_order) do
    args[#args + 1] = id
    args[#args + 1] = sales[id]
  end
  if #args > 0 then hset_all(K_SALES, args) end
end

for _, key in ipairs(delta_order) do
  -- HINCRBY keeps Redis' exact 64-bit integer arithmetic; Lua numbers are doubles.
  for f, n in pairs(deltas[key]) do
    if n ~= 0 then call("HINCRBY", key, f, fmt(n)) end
  end
  if changed[key] then
    call("HINCRBY", key, "version", 1)
    local args = { "as_of", as_of }
    local last = last_sale[key]
    if last then
      args[#args + 1] = "last_sale_at"
      args[#args + 1] = last[1]
      args[#args + 1] = "last_sale_id"
      args[#args + 1] = last[2]
      args[#args + 1] = "last_amount_idr"
      args[#args + 1] = fmt(last[3])
    end
    call("HSET", key, unpack(args))
  end
end
for key, members in pairs(board) do
  for m, n in pairs(members) do call("ZINCRBY", key, fmt(n), m) end
end
for key, list in pairs(tickers) do
  local first = math.max(1, #list - ticker_len + 1)
  for i = first, #list, 100 do
    call("LPUSH", key, unpack(list, i, math.min(i + 99, #list)))
  end
  call("LTRIM", key, 0, ticker_len - 1)
end
for f, n in pairs(stats) do call("HINCRBY", K_STATS, f, n) end
for i = 1, #PF, 3 do
  local p, batch_end = PF[i], tonumber(PF[i + 2])
  if (new_fence[p] or -1) < batch_end then new_fence[p] = batch_end end
end
local fences_out = {}
for p, off in pairs(new_fence) do
  if off > fence_of(p) then
    call("HSET", K_FENCE, p, fmt(off))
    fences[p] = off
  end
end
for p, f in pairs(fences) do
  fences_out[#fences_out + 1] = p
  fences_out[#fences_out + 1] = fmt(f)
end

local ev_totals = {}
for e = 0, n_events - 1 do ev_totals[#ev_totals + 1] = call("HGETALL", KEYS[EV0 + 4 * e]) end
local pair_totals = {}
for i = 0, n_pairs - 1 do pair_totals[#pair_totals + 1] = call("HGETALL", KEYS[PAIR0 + 2 * i]) end
return cjson.encode({ outcomes, ev_totals, pair_totals, fences_out })
