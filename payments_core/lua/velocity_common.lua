-- Shared by velocity.lua and velocity_batch.lua (prepended to each): exact count and sum over
-- [lo, hi) of a key. __BUCKET_MIN__ is replaced by velocity.BUCKET_MIN_MEMBERS when loaded.
local function vel_amount(m) return tonumber(string.match(m, '|(%d+)$')) or 0 end

-- The time a write trims relative to: the event time, but never later than the Redis server's clock.
-- Members older than (this - largest window - grace) are trimmed, so an event dated in the future (a
-- client clock gone wrong; the contract refuses them, this is defence in depth) must not take the
-- windows of the present with it. (TIME in a script: Redis 5+ replicates a script's effects.)
local vel_now_ms = nil
local function vel_trim_base(ts)
  if vel_now_ms == nil then
    local t = redis.call('TIME')
    vel_now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  if ts > vel_now_ms then return vel_now_ms end
  return ts
end

-- the bucket fields of the second of an event time: 's<second>', 't<ten seconds>', 'm<minute>', 'h<hour>'
-- (one table per second for the whole script call: a batch has many events in few seconds; read only)
local vel_fields_of_second = {}
local function vel_bucket_fields(ms)
  local sec = math.floor(ms / 1000)
  local fields = vel_fields_of_second[sec]
  if fields == nil then
    local minute = math.floor(sec / 60)
    fields = {'s' .. string.format('%d', sec), 't' .. string.format('%d', math.floor(sec / 10)),
              'm' .. string.format('%d', minute), 'h' .. string.format('%d', math.floor(minute / 60))}
    vel_fields_of_second[sec] = fields
  end
  return fields
end

-- sum of the amounts of the members scored in [lo, hi)
local function vel_scan_sum(key, lo, hi)
  if lo >= hi then return 0 end
  local s = 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, lo, '(' .. hi)) do s = s + vel_amount(m) end
  return s
end

-- Amount buckets are kept only for sets of at least VEL_BUCKET_MIN members. Every writer keeps
-- "the hash <set>:b is complete iff ZCARD(set) >= VEL_BUCKET_MIN" (checked after its trim): below
-- that a window is summed from its members anyway, and most cards and devices never pay the three
-- HINCRBYs per transaction.
local VEL_BUCKET_MIN = __BUCKET_MIN__

-- add amount a at event time ms to the field -> change table of a write
local function vel_delta_add(delta, ms, a)
  if a == 0 then return end
  for _, f in ipairs(vel_bucket_fields(ms)) do delta[f] = (delta[f] or 0) + a end
end

-- the hash rebuilt from every member of the set (the write that brings it to VEL_BUCKET_MIN)
local function vel_build_buckets(key, bkey)
  redis.call('DEL', bkey)  -- (a hash left by an older writer)
  local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local b = {}
  for j = 1, #all, 2 do vel_delta_add(b, tonumber(all[j + 1]), vel_amount(all[j])) end
  local args = {}
  for f, v in pairs(b) do
    if v ~= 0 then args[#args + 1] = f; args[#args + 1] = v end
    if #args >= 2000 then redis.call('HSET', bkey, unpack(args)); args = {} end
  end
  if #args > 0 then redis.call('HSET', bkey, unpack(args)) end
end

-- after a write that took the set from card_before to card_after members (additions, then the
-- trim): keep the invariant. delta: field -> change of the write's new and trimmed members; it is
-- only used (so only needed) when both cards are at least VEL_BUCKET_MIN.
local function vel_sync_buckets(key, bkey, card_before, card_after, delta, ttl)
  if card_after >= VEL_BUCKET_MIN then
    if card_before >= VEL_BUCKET_MIN then
      for field, d in pairs(delta) do
        if d ~= 0 and redis.call('HINCRBY', bkey, field, d) == 0 then redis.call('HDEL', bkey, field) end
      end
    else
      vel_build_buckets(key, bkey)
    end
    redis.call('PEXPIRE', bkey, ttl)
  elseif card_before >= VEL_BUCKET_MIN then
    redis.call('DEL', bkey)
  end
end

local VEL_PREFIX = {'s', 't', 'm', 'h'}
local VEL_UP = {10, 6, 60}  -- how many units of a level make one of the next

-- the bucket fields covering the whole units [a, b) of a level (1 second, 2 ten seconds, 3 minute,
-- 4 hour), coarsest first: appended to names (a 5-minute window: ~17 fields, not ~64 without the
-- ten-second level)
local function vel_cover(level, a, b, names)
  if a >= b then return end
  local r = VEL_UP[level]
  if r then
    local up_a, up_b = math.ceil(a / r), math.floor(b / r)
    if up_a < up_b then
      vel_cover(level, a, up_a * r, names)
      vel_cover(level + 1, up_a, up_b, names)
      vel_cover(level, up_b * r, b, names)
      return
    end
  end
  for x = a, b - 1 do names[#names + 1] = VEL_PREFIX[level] .. string.format('%d', x) end
end

-- sum of the bucket fields names of bkey (absent fields: 0), in HMGETs of at most 1,000 fields
local function vel_bucket_sum(bkey, names)
  local sum = 0
  for c = 1, #names, 1000 do
    local part = {}
    for q = c, math.min(c + 999, #names) do part[#part + 1] = names[q] end
    for _, v in ipairs(redis.call('HMGET', bkey, unpack(part))) do if v then sum = sum + tonumber(v) end end
  end
  return sum
end

-- count and amount sum of the members scored in [lo, hi): exact. The sum comes from the members
-- one by one when that is cheaper, otherwise from the buckets of the whole seconds, minutes and
-- hours inside the window plus the members of its two partial seconds.
local function vel_window(key, bkey, lo, hi, scan_limit)
  local n = redis.call('ZCOUNT', key, lo, '(' .. hi)
  -- (n >= VEL_BUCKET_MIN: the set holds at least n members, so it has its buckets)
  if n <= scan_limit or n < VEL_BUCKET_MIN then return n, vel_scan_sum(key, lo, hi) end
  local s_lo, s_hi = math.ceil(lo / 1000), math.floor(hi / 1000)  -- whole seconds inside
  if s_lo >= s_hi then return n, vel_scan_sum(key, lo, hi) end
  local names = {}
  vel_cover(1, s_lo, s_hi, names)
  if #names >= n then return n, vel_scan_sum(key, lo, hi) end
  return n, vel_scan_sum(key, lo, s_lo * 1000) + vel_scan_sum(key, s_hi * 1000, hi) + vel_bucket_sum(bkey, names)
end
