#!lua
-- The shebang (Redis 7) makes Redis Cluster refuse a key outside the slot of the declared
-- KEYS even when that key lives on the same node (without it such a write passes, and the
-- next resharding strands it): every key of the script must be in its tree's one slot.
-- apply_batch.lua: apply one batch of one event tree, atomically.
--
-- KEYS and ARGV are laid out by streams/script.py (see its docstring), which
-- also writes the record and entry layout (NF, R_*, E_*, S_*, channel codes) in
-- place of the "@layout" line below; the caller is streams/apply.py. For each
-- record, in order:
--   offset <= fence[partition]           -> duplicate:offset (a re-delivery)
--   rejected before Redis (op 'x')       -> rejected:<reason>
--   (ikm, sale_id) already has a de-dup entry
--                                        -> duplicate:sale_id if event, amount, kind
--                                           and refund_of are equal, else
--                                           rejected:sale_id_conflict
--   refund: (ikm, refund_of) has no entry -> rejected:unknown_refund_target
--           target not a sale of the same event and channel -> rejected:refund_mismatch
--           cumulative refunds above the sale's amount or quantity
--                                        -> rejected:refund_exceeds_sale
--   otherwise                            -> applied: totals of the event and every
--                                           ancestor, their day buckets, IKM totals,
--                                           board and ticker
-- Increments are summed in Lua tables and written once per field at the end with
-- HINCRBY; every changed totals hash gets version + 1 and as_of once per call.
-- De-dup entries live in small hashes (buckets, KEYS after the pairs' keys);
-- Python gives each record the bucket and field of its own entry and of its
-- refund target's, and the entry it is booked under (see streams/script.py:
-- event code, kind, then a sale's day and numbers or a refund's fingerprint).
-- Every entry the unfenced records name is read once (one HMGET per bucket),
-- kept in a table that the records of the batch read and update in order, and
-- written once per bucket at the end. A field stands for "<ikm>|<sale_id>": a
-- sale_id is unique per IKM, the Kafka key, so every ledger decision depends
-- only on the order within one partition, never on how partitions interleave
-- (and `rekap reconcile`'s partition-by-partition fold reaches the same result).
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

local K_FENCE, K_STATS, K_REJECTS = KEYS[1], KEYS[2], KEYS[3]
local EV0 = 4
local PAIR0 = EV0 + 4 * n_events
local BUCKET0 = PAIR0 + 2 * n_pairs
-- Values per HMGET/HSET/LPUSH call (Lua's unpack limit is about 8000).
local CHUNK = 1000

local tonumber = tonumber
local call, unpack, sfind, ssub, sbyte = redis.call, unpack, string.find, string.sub, string.byte
local floor = math.floor

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

-- Hex (two characters a byte) to bytes: how binary fields travel in the JSON of ARGV[7].
-- Memoised: a record's digests are decoded when the batch's entries are read and again
-- when it is applied.
local HEX, unhexed = {}, {}
for i = 0, 255 do
  HEX[string.format("%02x", i)] = string.char(i)
end
local function unhex(h)
  local v = unhexed[h]
  if v == nil then
    v = (string.gsub(h, "%x%x", HEX))
    unhexed[h] = v
  end
  return v
end

-- The de-dup buckets as this batch sees them: bucket index -> field -> entry, false if
-- absent; changed fields per bucket in order, written back at the end.
local entries = {}
local dirty, dirty_order = {}, {}

local function entry_of(bucket, field)
  local t = table_in(entries, bucket)
  local v = t[field]
  if v == nil then
    v = call("HGET", KEYS[BUCKET0 + bucket], field)
    t[field] = v
  end
  return v
end

local function put_entry(bucket, field, entry)
  table_in(entries, bucket)[field] = entry
  local d = dirty[bucket]
  if d == nil then
    d = {}
    dirty[bucket] = d
    dirty_order[#dirty_order + 1] = bucket
  end
  if not d[field] then
    d[field] = true
    d[#d + 1] = field
  end
end

do  -- read every entry the unfenced records name, one HMGET per bucket
  local want, buckets = {}, {}
  local function wish(bucket_text, digest)
    local bucket = tonumber(bucket_text)
    local w = want[bucket]
    if w == nil then
      w = { seen = {} }
      want[bucket] = w
      buckets[#buckets + 1] = bucket
    end
    local field = unhex(digest)
    if not w.seen[field] then w.seen[field] = true; w[#w + 1] = field end
  end
  for r = 0, n_records - 1 do
    local b = r * NF
    if A[b + R_OP] ~= "x" and tonumber(A[b + R_OFFSET]) > fence_of(A[b + R_PARTITION]) then
      wish(A[b + R_SALE_BUCKET], A[b + R_SALE_DIGEST])
      if A[b + R_OP] == "r" then wish(A[b + R_TARGET_BUCKET], A[b + R_TARGET_DIGEST]) end
    end
  end
  for _, bucket in ipairs(buckets) do
    local w, t = want[bucket], table_in(entries, bucket)
    for i = 1, #w, CHUNK do
      local last = math.min(i + CHUNK - 1, #w)
      local values = call("HMGET", KEYS[BUCKET0 + bucket], unpack(w, i, last))
      for j = i, last do t[w[j]] = values[j - i + 1] end
    end
  end
end

-- Reading entries (layout in streams/script.py).
local function is_refund(entry) return ssub(entry, E_KIND, E_KIND_END) == REFUND_CODE end
local function same_event(a, b)
  return ssub(a, E_EVENT, E_EVENT_END) == ssub(b, E_EVENT, E_EVENT_END)
end
-- A sale entry's numbers as decimal strings (S_AMOUNT_IDR, ...).
local function numbers_of(entry) return split(ssub(entry, E_NUMBERS), ",") end
-- A sale entry's day, stored as date.toordinal() (3 bytes), as YYYY-MM-DD: the
-- proleptic Gregorian civil-from-days conversion (H. Hinnant), in whole numbers.
local function day_of(entry)
  local b1, b2, b3 = sbyte(entry, E_DAY, E_DAY_END)
  local z = b1 * 65536 + b2 * 256 + b3 + 305   -- days since 0000-03-01 (ordinal 1 = 0001-01-01)
  local era = floor(z / 146097)
  local doe = z - era * 146097                                        -- day of the 400-year era
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))   -- day of a March-based year
  local mp = floor((5 * doy + 2) / 153)                               -- month, March = 0
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = era * 400 + yoe + (m <= 2 and 1 or 0)
  return string.format("%04d-%02d-%02d", y, m, d)
end

-- Whether a resend is the same record as the booked one: same event and kind, and the
-- same amount (a sale) or amount and refund_of (a refund: its whole entry).
local function same_record(booked, entry)
  if not same_event(booked, entry) or is_refund(booked) ~= is_refund(entry) then return false end
  if is_refund(entry) then return booked == entry end
  return numbers_of(booked)[S_AMOUNT_IDR] == numbers_of(entry)[S_AMOUNT_IDR]
end

local function conflict_detail(sale_id, ikm, booked, entry)
  local where = same_event(booked, entry) and "this event" or "another event"
  local what = is_refund(booked) and "a refund"
    or ("a sale of " .. numbers_of(booked)[S_AMOUNT_IDR] .. " IDR")
  return "sale_id " .. sale_id .. " of " .. ikm .. " is already used by " .. what .. " in "
    .. where
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

-- A refund's checks against its target; on success the target's refunded numbers grow
-- and the refund's channel and day (its sale's) come back.
local function refund_target(b, entry, amount, qty)
  local ikm, event, refund_of = A[b + R_IKM_ID], A[b + R_EVENT_ID], A[b + R_REFUND_OF]
  local bucket, field = tonumber(A[b + R_TARGET_BUCKET]), unhex(A[b + R_TARGET_DIGEST])
  local target = entry_of(bucket, field)
  if not target then
    return "rejected:unknown_refund_target", "refund_of " .. refund_of
      .. " is not an applied sale of " .. ikm
  end
  if is_refund(target) then
    return "rejected:refund_mismatch", "refund_of " .. refund_of .. " is a refund of " .. ikm
      .. ", not a sale in " .. event
  end
  if not same_event(target, entry) then
    return "rejected:refund_mismatch", "refund_of " .. refund_of .. " is a sale of " .. ikm
      .. " in another event, not in " .. event
  end
  -- A refund comes through the channel of its sale: one channel (or a booth) may not take
  -- back another's sales. Ingest checks it by sale_id namespace; this covers records that
  -- reached the topic some other way.
  local sale_channel = CHANNEL_OF_CODE[ssub(target, E_KIND, E_KIND_END)]
  if sale_channel ~= A[b + R_CHANNEL] then
    return "rejected:refund_mismatch", "refund_of " .. refund_of .. " is a sale of " .. ikm
      .. " through channel " .. sale_channel .. "; a refund must come through that channel, not "
      .. A[b + R_CHANNEL]
  end
  local n = numbers_of(target)
  local refunded = tonumber(n[S_REFUNDED_IDR]) + amount
  local refunded_qty = tonumber(n[S_REFUNDED_QUANTITY]) + qty
  if refunded > tonumber(n[S_AMOUNT_IDR]) or refunded_qty > tonumber(n[S_QUANTITY]) then
    return "rejected:refund_exceeds_sale", "refunds of " .. refund_of .. " would total "
      .. fmt(refunded) .. " IDR / " .. fmt(refunded_qty) .. " units, the sale was "
      .. n[S_AMOUNT_IDR] .. " IDR / " .. n[S_QUANTITY] .. " units"
  end
  n[S_REFUNDED_IDR], n[S_REFUNDED_QUANTITY] = fmt(refunded), fmt(refunded_qty)
  put_entry(bucket, field, ssub(target, E_EVENT, E_NUMBERS - 1) .. table.concat(n, ","))
  return nil, nil, sale_channel, day_of(target)
end

local function apply_sale(b, op)
  local sale_id, ikm = A[b + R_SALE_ID], A[b + R_IKM_ID]
  local channel, day = A[b + R_CHANNEL], A[b + R_DAY]
  local amount, qty = tonumber(A[b + R_AMOUNT_IDR]), tonumber(A[b + R_QUANTITY])
  local is_sale = op == "s"
  local entry = unhex(A[b + R_ENTRY])

  local bucket, field = tonumber(A[b + R_SALE_BUCKET]), unhex(A[b + R_SALE_DIGEST])
  local booked = entry_of(bucket, field)
  if booked then
    if same_record(booked, entry) then
      return "duplicate:sale_id", "sale_id " .. sale_id .. " was applied before"
    end
    return "rejected:sale_id_conflict", conflict_detail(sale_id, ikm, booked, entry)
  end

  if not is_sale then
    local rejected, detail
    -- A refund is booked where its sale was: the sale's channel and local day.
    rejected, detail, channel, day = refund_target(b, entry, amount, qty)
    if rejected then return rejected, detail end
  end
  put_entry(bucket, field, entry)

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

for _, bucket in ipairs(dirty_order) do
  local args, t = {}, entries[bucket]
  for _, field in ipairs(dirty[bucket]) do
    args[#args + 1] = field
    args[#args + 1] = t[field]
  end
  hset_all(KEYS[BUCKET0 + bucket], args)
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
