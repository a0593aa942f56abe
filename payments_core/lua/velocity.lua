-- One transaction's velocity (record and/or read); velocity_common.lua is prepended.
-- KEYS: [lookup key,] then per entity its sorted set and its bucket hash
-- ARGV: member, ts (ms), mode (1 record+read, 2 record, 0 read), grace (ms), 'lookup' or '-',
--       scan limit, then per entity its windows in seconds, comma-separated, ascending
local member = ARGV[1]
local ts = tonumber(ARGV[2])
local mode = ARGV[3]
local grace = tonumber(ARGV[4])
local scan_limit = tonumber(ARGV[6])
local out = {}
local first = 1
if ARGV[5] == 'lookup' then
  -- KEYS[1] is a plain key to read in the same call (the scoring API's stored decision)
  out[1] = redis.call('GET', KEYS[1])
  first = 2
end

local e = 0
for i = first, #KEYS, 2 do
  e = e + 1
  local key, bkey = KEYS[i], KEYS[i + 1]
  local windows = {}
  for w in string.gmatch(ARGV[6 + e], '%d+') do windows[#windows + 1] = tonumber(w) * 1000 end
  local maxw = windows[#windows]
  local card = nil
  if mode ~= '0' then
    local added = redis.call('ZADD', key, ts, member)
    local cut = '(' .. string.format('%d', vel_trim_base(ts) - maxw - grace)
    local card_before = redis.call('ZCARD', key) - added
    local delta, removed = {}, 0
    if card_before >= VEL_BUCKET_MIN then
      -- the buckets exist: the new member in, the trimmed ones out
      if added == 1 then vel_delta_add(delta, ts, vel_amount(member)) end
      local old = redis.call('ZRANGEBYSCORE', key, '-inf', cut, 'WITHSCORES')
      if #old > 0 then
        for k = 1, #old, 2 do vel_delta_add(delta, tonumber(old[k + 1]), -vel_amount(old[k])) end
        removed = redis.call('ZREMRANGEBYSCORE', key, '-inf', cut)
      end
    else
      removed = redis.call('ZREMRANGEBYSCORE', key, '-inf', cut)
    end
    card = card_before + added - removed
    vel_sync_buckets(key, bkey, card_before, card, delta, maxw + grace)
    redis.call('PEXPIRE', key, maxw + grace)
  end
  if mode ~= '2' then
    local items, n = nil, 0
    if card ~= nil and card <= scan_limit then
      -- a small set (most cards and devices): read the window without counting it first
      items = redis.call('ZRANGEBYSCORE', key, ts - maxw, '(' .. ts, 'WITHSCORES')
      n = #items / 2
    else
      n = redis.call('ZCOUNT', key, ts - maxw, '(' .. ts)
    end
    if n <= scan_limit then
      -- few members: one scan serves every window
      local counts, sums = {}, {}
      for j = 1, #windows do counts[j] = 0; sums[j] = 0 end
      if n > 0 then
        items = items or redis.call('ZRANGEBYSCORE', key, ts - maxw, '(' .. ts, 'WITHSCORES')
        for k = 1, #items, 2 do
          local s = tonumber(items[k + 1])
          local amt = vel_amount(items[k])
          for j = 1, #windows do
            if s >= ts - windows[j] then counts[j] = counts[j] + 1; sums[j] = sums[j] + amt end
          end
        end
      end
      for j = 1, #windows do out[#out + 1] = counts[j]; out[#out + 1] = sums[j] end
    else
      for j = 1, #windows do
        local c, sm = vel_window(key, bkey, ts - windows[j], ts, scan_limit)
        out[#out + 1] = c; out[#out + 1] = sm
      end
    end
  end
end
return out
