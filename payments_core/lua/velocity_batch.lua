-- A whole batch's velocity in one call; velocity_common.lua is prepended.
local grace = tonumber(ARGV[1])
local record = ARGV[2] ~= '0'
local read = ARGV[2] ~= '2'
local nent = tonumber(ARGV[3])
local windows, full = {}, {}
for e = 1, nent do
  local ws = {}
  for w in string.gmatch(ARGV[3 + e], '%d+') do ws[#ws + 1] = tonumber(w) * 1000 end
  windows[e] = ws
  full[e] = string.sub(ARGV[3 + 2 * nent + e], 1, 1) == 'a'
end
-- key index -> entity index
local key_entity = {}
local pos = 1
for e = 1, nent do
  local count = tonumber(ARGV[3 + nent + e])
  for k = pos, pos + count - 1 do key_entity[k] = e end
  pos = pos + count
end
-- transactions, column by column (space-separated): members, event times, one key index per entity
local members, stamps, kidx = {}, {}, {}
local n = 0
for m in string.gmatch(ARGV[4 + 3 * nent], '%S+') do n = n + 1; members[n] = m end
local i = 0
for t in string.gmatch(ARGV[5 + 3 * nent], '%d+') do i = i + 1; stamps[i] = tonumber(t) end
local by_key = {}
for e = 1, nent do
  i = 0
  for k in string.gmatch(ARGV[5 + 3 * nent + e], '%d+') do
    i = i + 1
    k = tonumber(k)
    local list = by_key[k]
    if list == nil then list = {}; by_key[k] = list end
    list[#list + 1] = i
  end
end
-- amount of a member '<transaction_id>|<amount_minor>' (txn_ + 16 hex: '|' at 21)
local function amount(m)
  if string.byte(m, 21) == 124 then return tonumber(string.sub(m, 22)) or 0 end
  return tonumber(string.match(m, '|(%d+)$')) or 0
end
-- first index with s[idx] >= x (lo..#s+1)
local function lower(s, x, lo)
  local hi = #s + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if s[mid] < x then lo = mid + 1 else hi = mid end
  end
  return lo
end
local out = {}
-- members of key scored in [a, b): their scores (ascending) and the prefix sums of their amounts
local function scan_prefix(key, a, b)
  local s, p = {}, {0}
  if a >= b then return s, p end
  local items = redis.call('ZRANGEBYSCORE', key, string.format('%d', a), '(' .. string.format('%d', b), 'WITHSCORES')
  for j = 1, #items, 2 do
    local m = #s + 1
    s[m] = tonumber(items[j + 1])
    p[m + 1] = p[m] + amount(items[j])
  end
  return s, p
end
-- The windows ws of every transaction of a key that has its amount buckets, with work in
-- proportion to the batch, not to the window: a window [t - w, t) is its whole seconds (ZCOUNT and
-- the buckets, once per distinct pair of seconds in the batch) plus its two partial seconds, found
-- by binary search in two range reads shared by the batch (the batch's own seconds, and the
-- seconds just older than its windows). The entity's outputs start at offset off of each
-- transaction's nout.
local cover_names = {}  -- 'a:b' -> the bucket fields of the whole seconds [a, b)
local function edge_windows(key, bkey, list, ws, lo_ts, hi_ts, nout, off)
  local rs, rp = scan_prefix(key, math.floor(lo_ts / 1000) * 1000, hi_ts)
  for j = 1, #ws do
    local w = ws[j]
    local os, op = scan_prefix(key, lo_ts - w, math.ceil((hi_ts - w) / 1000) * 1000)
    local mids = {}
    for _, i in ipairs(list) do
      local t = stamps[i]
      local a, b = math.ceil((t - w) / 1000), math.floor(t / 1000)  -- whole seconds [a, b)
      local mk = string.format('%d:%d', a, b)
      local mid = mids[mk]
      if mid == nil then
        local names = cover_names[mk]  -- the same fields for every key of the batch
        if names == nil then
          names = {}
          vel_cover(1, a, b, names)
          cover_names[mk] = names
        end
        mid = {redis.call('ZCOUNT', key, string.format('%d', a * 1000), '(' .. string.format('%d', b * 1000)),
               vel_bucket_sum(bkey, names)}
        mids[mk] = mid
      end
      local o1, o2 = lower(os, t - w, 1), lower(os, a * 1000, 1)
      local r1, r2 = lower(rs, b * 1000, 1), lower(rs, t, 1)
      local base = (i - 1) * nout + off + 2 * j
      out[base - 1] = mid[1] + (o2 - o1) + (r2 - r1)
      out[base] = mid[2] + (op[o2] - op[o1]) + (rp[r2] - rp[r1])
    end
  end
end
local nout = 0
local offset = {}
for e = 1, nent do offset[e] = nout; nout = nout + 2 * #windows[e] end
for i = 1, n * nout do out[i] = 0 end
-- KEYS: the sorted sets of the batch's entity values, then (same order) their bucket hashes
local nvalues = #KEYS / 2
for k, list in pairs(by_key) do
  local key = KEYS[k]
  local e = key_entity[k]
  local ws = windows[e]
  local maxw = ws[#ws]
  local lo_ts, hi_ts = stamps[list[1]], stamps[list[1]]
  for _, i in ipairs(list) do
    local t = stamps[i]
    if t < lo_ts then lo_ts = t end
    if t > hi_ts then hi_ts = t end
  end
  local thr = vel_trim_base(hi_ts) - maxw - grace  -- (never relative to a time past the server clock)
  local items = nil  -- the members read (full sets: the whole set, read once for the trim and the read)
  local card_now = nil  -- members after this batch's write
  if record then
    local bkey = KEYS[k + nvalues]
    -- the members not stored yet (a replayed transaction changes nothing, its buckets neither)
    local fresh = {}
    if #list == 1 then
      if redis.call('ZADD', key, stamps[list[1]], members[list[1]]) == 1 then fresh[1] = list[1] end
    else
      local seen = {}
      for c = 1, #list, 2000 do
        local names = {}
        for q = c, math.min(c + 1999, #list) do names[#names + 1] = members[list[q]] end
        local scores = redis.call('ZMSCORE', key, unpack(names))
        for q = 1, #names do
          local name = names[q]
          if not scores[q] and not seen[name] then
            seen[name] = true
            fresh[#fresh + 1] = list[c + q - 1]
          end
        end
      end
      local args = {}
      for _, i in ipairs(list) do
        args[#args + 1] = stamps[i]
        args[#args + 1] = members[i]
        if #args >= 4000 then redis.call('ZADD', key, unpack(args)); args = {} end
      end
      if #args > 0 then redis.call('ZADD', key, unpack(args)) end
    end
    -- trim (relative to the key's newest event of the batch)
    local card, old
    if full[e] and read then
      items = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
      card = #items / 2
      old = {}
      for j = 1, #items, 2 do
        if tonumber(items[j + 1]) >= thr then break end
        old[#old + 1] = items[j]; old[#old + 1] = items[j + 1]
      end
    else
      card = redis.call('ZCARD', key)
      old = redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', thr), 'WITHSCORES')
    end
    if #old > 0 then redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', thr)) end
    local card_before, card_after = card - #fresh, card - #old / 2
    card_now = card_after
    local delta = {}
    if card_before >= VEL_BUCKET_MIN and card_after >= VEL_BUCKET_MIN then
      for _, i in ipairs(fresh) do vel_delta_add(delta, stamps[i], amount(members[i])) end
      for j = 1, #old, 2 do vel_delta_add(delta, tonumber(old[j + 1]), -amount(old[j])) end
    end
    vel_sync_buckets(key, bkey, card_before, card_after, delta, maxw + grace)
    redis.call('PEXPIRE', key, maxw + grace)
  end
  local per_transaction = false
  if read then
    if full[e] then
      -- small sets (card, device): everything once (already read when recording)
      items = items or redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. tostring(hi_ts), 'WITHSCORES')
    elseif ws[1] >= 2000 and hi_ts - lo_ts + 2000 < ws[1]
        and (card_now or redis.call('ZCARD', key)) >= VEL_BUCKET_MIN then
      -- a key with its amount buckets (merchants) and a batch shorter than its windows: from the
      -- edges of the batch, not by scanning every member of its windows (a busy merchant's 5-minute
      -- window holds thousands, and at a high rate each batch has most merchants)
      per_transaction = true
      edge_windows(key, KEYS[k + nvalues], list, ws, lo_ts, hi_ts, nout, offset[e])
    else
      items = redis.call('ZRANGEBYSCORE', key, tostring(lo_ts - maxw), '(' .. tostring(hi_ts), 'WITHSCORES')
    end
  end
  items = items or {}
  local s, p = {}, {0}
  local m = 0
  for j = 1, #items, 2 do
    local score = tonumber(items[j + 1])
    if not record or score >= thr then
      m = m + 1
      s[m] = score
      p[m + 1] = p[m] + amount(items[j])
    end
  end
  for _, i in ipairs(per_transaction and {} or list) do
    local t = stamps[i]
    local hi = lower(s, t, 1)
    local base = (i - 1) * nout + offset[e]
    for j = 1, #ws do
      local lo = lower(s, t - ws[j], 1)
      out[base + 2 * j - 1] = hi - lo
      out[base + 2 * j] = p[hi] - p[lo]
    end
  end
end
if not read then return '' end
return table.concat(out, ',')
