-- apply_batch.lua: apply one batch of one event tree, atomically.
--
-- KEYS and ARGV are laid out by streams/batch.py (see its docstring); the
-- caller is streams/apply.py. For each record, in order:
--   offset <= fence[partition]           -> duplicate:offset (a re-delivery)
--   rejected before Redis (op 'x')       -> rejected:<reason>
--   sale_id already in the sales hash    -> duplicate:sale_id if ikm, event, amount,
--                                           kind and refund_of are equal, else
--                                           rejected:sale_id_conflict
--   refund: target missing               -> rejected:unknown_refund_target
--           target not a sale of the same ikm and event -> rejected:refund_mismatch
--           cumulative refunds above the sale's amount or quantity
--                                        -> rejected:refund_exceeds_sale
--   otherwise                            -> applied: totals of the event and every
--                                           ancestor, their day buckets, IKM totals,
--                                           board and ticker
-- Increments are summed in Lua tables and written once per field at the end;
-- every changed totals hash gets version + 1 and as_of once per call.
-- Returns { {outcome, detail, ...}, {totals of event 0..E-1}, {totals of pair 0..P-1} }.

local NF = 15
local as_of = ARGV[1]
local topic = ARGV[2]
local ticker_len = tonumber(ARGV[3])
local n_events = tonumber(ARGV[4])
local n_pairs = tonumber(ARGV[5])
local n_records = tonumber(ARGV[6])
local HEAD = 6

local K_FENCE, K_STATS, K_SALES, K_REJECTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local EV0 = 5
local PAIR0 = 5 + 4 * n_events

local function fmt(n) return string.format("%d", n) end

local function split(s, sep)
  local out, start = {}, 1
  while true do
    local i = string.find(s, sep, start, true)
    if not i then
      out[#out + 1] = string.sub(s, start)
      return out
    end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end

local function ints(csv)
  local out = {}
  if csv == "" then return out end
  for _, v in ipairs(split(csv, ",")) do out[#out + 1] = tonumber(v) end
  return out
end

local deltas = {}      -- key -> field -> integer delta
local changed = {}     -- totals key -> true
local changed_order = {}
local board = {}       -- board key -> member -> delta
local tickers = {}     -- ticker key -> list of JSON, oldest first
local last_sale = {}   -- ikm totals key -> {at, id, amount}
local stats = {}
local fences = {}
local new_fence = {}

local function add(key, field, n)
  local t = deltas[key]
  if t == nil then
    t = {}
    deltas[key] = t
  end
  t[field] = (t[field] or 0) + n
end

local function mark(key)
  if not changed[key] then
    changed[key] = true
    changed_order[#changed_order + 1] = key
  end
end

local function fence_of(p)
  local f = fences[p]
  if f == nil then
    local v = redis.call("HGET", K_FENCE, p)
    f = v and tonumber(v) or -1
    fences[p] = f
  end
  return f
end

local function apply_sale(b, op)
  local sale_id, ikm, event = ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]
  local channel, day = ARGV[b + 7], ARGV[b + 8]
  local amount, qty = tonumber(ARGV[b + 9]), tonumber(ARGV[b + 10])
  local refund_of = ARGV[b + 11]
  local kind = (op == "s") and "sale" or "refund"

  local existing = redis.call("HGET", K_SALES, sale_id)
  if existing then
    local e = split(existing, "|")
    if e[1] == ikm and e[2] == event and tonumber(e[5]) == amount and e[9] == kind
        and e[10] == refund_of then
      return "duplicate:sale_id", "sale_id " .. sale_id .. " was applied before"
    end
    return "rejected:sale_id_conflict", "sale_id " .. sale_id .. " is already used by a " .. e[9]
      .. " of " .. e[1] .. " in " .. e[2] .. " for " .. e[5] .. " IDR"
  end

  if kind == "refund" then
    local target = redis.call("HGET", K_SALES, refund_of)
    if not target then
      return "rejected:unknown_refund_target", "refund_of " .. refund_of .. " is not an applied sale"
    end
    local s = split(target, "|")
    if s[9] ~= "sale" or s[1] ~= ikm or s[2] ~= event then
      return "rejected:refund_mismatch", "refund_of " .. refund_of .. " is a " .. s[9] .. " of "
        .. s[1] .. " in " .. s[2] .. ", not a sale of " .. ikm .. " in " .. event
    end
    local refunded = tonumber(s[7]) + amount
    local refunded_qty = tonumber(s[8]) + qty
    if refunded > tonumber(s[5]) or refunded_qty > tonumber(s[6]) then
      return "rejected:refund_exceeds_sale", "refunds of " .. refund_of .. " would total "
        .. fmt(refunded) .. " IDR / " .. fmt(refunded_qty) .. " units, the sale was " .. s[5]
        .. " IDR / " .. s[6] .. " units"
    end
    s[7] = fmt(refunded)
    s[8] = fmt(refunded_qty)
    redis.call("HSET", K_SALES, refund_of, table.concat(s, "|"))
    -- A refund is booked where its sale was: the sale's channel and local day.
    channel, day = s[3], s[4]
  end
  redis.call("HSET", K_SALES, sale_id, table.concat(
    {ikm, event, channel, day, fmt(amount), fmt(qty), "0", "0", kind, refund_of}, "|"))

  local evs, prs = ints(ARGV[b + 12]), ints(ARGV[b + 13])
  local ch = "ch:" .. channel .. ":"
  local signed = amount
  if kind == "refund" then signed = -amount end
  for j = 1, #evs do
    local eb = EV0 + 4 * evs[j]
    local pb = PAIR0 + 2 * prs[j]
    local totals = { KEYS[eb], KEYS[pb] }
    local days = { KEYS[eb + 1], KEYS[pb + 1] }
    for _, k in ipairs(totals) do
      mark(k)
      add(k, "amount_idr", signed)
      add(k, ch .. "amount_idr", signed)
      if kind == "sale" then
        add(k, "gross_idr", amount)
        add(k, "count", 1)
        add(k, "quantity", qty)
        add(k, ch .. "count", 1)
      else
        add(k, "refunds_idr", amount)
        add(k, "refund_count", 1)
        add(k, "quantity", -qty)
        add(k, ch .. "refunds_idr", amount)
      end
    end
    for _, k in ipairs(days) do
      add(k, day .. ":amount_idr", signed)
      if kind == "sale" then
        add(k, day .. ":count", 1)
        add(k, day .. ":quantity", qty)
      else
        add(k, day .. ":refunds_idr", amount)
        add(k, day .. ":quantity", -qty)
      end
    end
    local bk = KEYS[eb + 2]
    local members = board[bk]
    if members == nil then
      members = {}
      board[bk] = members
    end
    members[ikm] = (members[ikm] or 0) + signed
    local tk = KEYS[eb + 3]
    local list = tickers[tk]
    if list == nil then
      list = {}
      tickers[tk] = list
    end
    list[#list + 1] = ARGV[b + 14]
    if kind == "sale" then
      last_sale[KEYS[pb]] = { ARGV[b + 15], sale_id, amount }
    end
  end
  return "applied", ""
end

local outcomes = {}
for r = 0, n_records - 1 do
  local b = HEAD + r * NF
  local part, off_text, op = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local off = tonumber(off_text)
  local outcome, detail
  if off <= fence_of(part) then
    outcome = "duplicate:offset"
    detail = redis.call("HGET", K_REJECTS, topic .. "/" .. part .. "/" .. off_text) or ""
  else
    if (new_fence[part] or -1) < off then new_fence[part] = off end
    if op == "x" then
      outcome, detail = "rejected:" .. ARGV[b + 14], ""
    else
      outcome, detail = apply_sale(b, op)
      if string.sub(outcome, 1, 9) == "rejected:" then
        redis.call("HSET", K_REJECTS, topic .. "/" .. part .. "/" .. off_text,
          string.sub(outcome, 10) .. " " .. detail)
      end
    end
  end
  stats[outcome] = (stats[outcome] or 0) + 1
  outcomes[#outcomes + 1] = outcome
  outcomes[#outcomes + 1] = detail
end

for key, fields in pairs(deltas) do
  for f, n in pairs(fields) do
    if n ~= 0 then redis.call("HINCRBY", key, f, fmt(n)) end
  end
end
for _, key in ipairs(changed_order) do
  redis.call("HINCRBY", key, "version", 1)
  redis.call("HSET", key, "as_of", as_of)
end
for key, s in pairs(last_sale) do
  redis.call("HSET", key, "last_sale_at", s[1], "last_sale_id", s[2], "last_amount_idr", fmt(s[3]))
end
for key, members in pairs(board) do
  for m, n in pairs(members) do redis.call("ZINCRBY", key, fmt(n), m) end
end
for key, list in pairs(tickers) do
  local first = math.max(1, #list - ticker_len + 1)
  for i = first, #list, 100 do
    redis.call("LPUSH", key, unpack(list, i, math.min(i + 99, #list)))
  end
  redis.call("LTRIM", key, 0, ticker_len - 1)
end
for f, n in pairs(stats) do redis.call("HINCRBY", K_STATS, f, n) end
for p, off in pairs(new_fence) do redis.call("HSET", K_FENCE, p, fmt(off)) end

local ev_totals = {}
for e = 0, n_events - 1 do ev_totals[#ev_totals + 1] = redis.call("HGETALL", KEYS[EV0 + 4 * e]) end
local pair_totals = {}
for i = 0, n_pairs - 1 do pair_totals[#pair_totals + 1] = redis.call("HGETALL", KEYS[PAIR0 + 2 * i]) end
return { outcomes, ev_totals, pair_totals }
