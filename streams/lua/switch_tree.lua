#!lua
-- switch_tree.lua: move the worker's writes of one event tree to a new generation, atomically.
-- Called by consumers/rebuild.py once the new generation holds the tree's ledger.
--
-- KEYS[1]  the tree pointer P:{R}:gen
-- KEYS[2]  the tree's fence hash (sales topic) in the old generation
-- KEYS[3]  the same in the new generation
-- then three per event of the tree: its totals hash in the old generation, in the new
-- one, and its leaderboard in the old one.
-- ARGV[1] old generation   ARGV[2] new generation
-- ARGV[3] the readers' generation (what an absent tree pointer means)
-- ARGV[4] partitions of the sales topic   ARGV[5] "1": switch even if the new one is behind
--
-- Every key shares the tree's hash tag, so this is one slot on Redis Cluster. The IKM totals
-- hashes are not in KEYS: which IKM took part is only known here, from the old leaderboard
-- (a member for every IKM totals hash), so the script derives their names from the event's
-- totals key (<event key>:ikm:<ikm>, rekap.names.Keys.ikm_totals); they share its tag.
--
-- Returns {"switched"}, {"done"} (already on the new generation), {"other", generation}
-- (the tree is on neither), or {"behind", partition, old fence, new fence, ...} when the new
-- generation has applied less of a partition than the old one (and ARGV[5] is not "1").
-- On a switch:
--  * every totals hash of the new generation gets a version above the old one's, so the
--    totals the worker publishes from now on win over every version it published before
--    (subscribers keep the highest version of a key);
--  * every partition of the old fence hash is set to -2 (streams.progress.RETIRED_FENCE),
--    below any fence the worker expects: its next call on the old generation writes nothing
--    and makes it resolve the pointer, which now names the new generation.

local K_POINTER, K_OLD_FENCE, K_NEW_FENCE = KEYS[1], KEYS[2], KEYS[3]
local old_gen, new_gen = tonumber(ARGV[1]), tonumber(ARGV[2])
local current = tonumber(redis.call("GET", K_POINTER) or ARGV[3])
if current == new_gen then return { "done" } end
if current ~= old_gen then return { "other", tostring(current) } end

if ARGV[5] ~= "1" then
  local behind = {}
  local old_fences = redis.call("HGETALL", K_OLD_FENCE)
  for i = 1, #old_fences, 2 do
    local p, f = old_fences[i], tonumber(old_fences[i + 1])
    local n = tonumber(redis.call("HGET", K_NEW_FENCE, p) or "-1")
    if n < f then
      behind[#behind + 1] = p
      behind[#behind + 1] = tostring(f)
      behind[#behind + 1] = tostring(n)
    end
  end
  if #behind > 0 then
    table.insert(behind, 1, "behind")
    return behind
  end
end

local function lift(old_key, new_key)
  local v = tonumber(redis.call("HGET", old_key, "version") or "0")
  if v > 0 and tonumber(redis.call("HGET", new_key, "version") or "0") <= v then
    redis.call("HSET", new_key, "version", string.format("%d", v + 1))
  end
end

for i = 4, #KEYS, 3 do
  local old_ev, new_ev, old_board = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  lift(old_ev, new_ev)
  for _, ikm in ipairs(redis.call("ZRANGE", old_board, 0, -1)) do
    lift(old_ev .. ":ikm:" .. ikm, new_ev .. ":ikm:" .. ikm)
  end
end

for p = 0, tonumber(ARGV[4]) - 1 do
  redis.call("HSET", K_OLD_FENCE, tostring(p), "-2")
end
redis.call("SET", K_POINTER, ARGV[2])
return { "switched" }
