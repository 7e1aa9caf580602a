-- c4route: reserve a decision's first channel and attempt, and open the
-- call's shared record (SPEC §9.4). One atomic step, so replicas deciding
-- at once never put more than `calls` calls on a trunk or gateway.
--
-- KEYS[1] the trunk's channels (zset: member -> expiry ms)
-- KEYS[2] the gateway's channels (zset)
-- KEYS[3] the trunk's attempts in the last second (zset: member -> ms)
-- KEYS[4] the call's record (hash), or the same key as KEYS[3] when the
--         query has no Call-ID (then nothing is held and nothing opened)
-- ARGV[1] trunk `calls` limit (0: none)     ARGV[2] gateway `calls` limit
-- ARGV[3] trunk `cps` limit (0: none)       ARGV[4] '1': hold a channel
-- ARGV[5] max_duration in ms                ARGV[6] this attempt's member
-- ARGV[7] key prefix                        ARGV[8] replica id
-- ARGV[9] '1': force (record a decision taken without the store: no limit
--         is checked, what it took is added)
-- ARGV[10] Call-ID                          ARGV[11..] routes, each
--         "trunk\31gateway\31dst\31group"
-- Returns 0 taken, 1 trunk calls full, 2 gateway calls full, 3 trunk cps.
--
-- A window is kept only where its limit is set (a trunk's `cps`, a
-- gateway's `calls`): each costs redis a few calls per decision, and only
-- a limit reads it. A trunk's channels are always kept (GET /trunks shows
-- them as shared_calls, and a limit set by a reload finds them).
--
-- Key names of a re-asked call's earlier routes are built here from the
-- prefix: c4route needs a standalone Redis or Valkey (or one primary of a
-- Sentinel set), not Redis Cluster.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = ARGV[4] == '1'
local force = ARGV[9] == '1'
local maxdur = tonumber(ARGV[5])
local prefix = ARGV[7]
local call_id = ARGV[10]
local sep = '\31'
local gw_limited = tonumber(ARGV[2]) > 0

local function split(s)
  local out = {}
  for part in string.gmatch(s .. sep, '(.-)' .. sep) do out[#out + 1] = part end
  return out
end

if hold then
  -- Kamailio asked again for a call already open: what the old record
  -- holds is released first.
  local n = tonumber(redis.call('HGET', KEYS[4], 'n') or '0')
  if n > 0 then
    local h = tonumber(redis.call('HGET', KEYS[4], 'h') or '0')
    for i = 0, n - 1 do
      if bit.band(h, bit.lshift(1, i)) ~= 0 then
        local r = split(redis.call('HGET', KEYS[4], 'r' .. i) or '')
        local m = call_id .. sep .. i
        redis.call('ZREM', prefix .. 'tc:' .. r[1], m)
        redis.call('ZREM', prefix .. 'gc:' .. r[2], m)
      end
    end
    redis.call('DEL', KEYS[4])
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if gw_limited then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
  if not force then
    local max = tonumber(ARGV[1])
    if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then return 1 end
    max = tonumber(ARGV[2])
    if max > 0 and redis.call('ZCARD', KEYS[2]) >= max then return 2 end
  end
end
local cps = tonumber(ARGV[3])
if cps > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 1000)
  if not force and redis.call('ZCARD', KEYS[3]) >= cps then return 3 end
  redis.call('ZADD', KEYS[3], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[3], 2000)
end
if hold then
  local m = call_id .. sep .. '0'
  redis.call('ZADD', KEYS[1], now + maxdur, m)
  redis.call('PEXPIRE', KEYS[1], maxdur + 60000)
  if gw_limited then
    redis.call('ZADD', KEYS[2], now + maxdur, m)
    redis.call('PEXPIRE', KEYS[2], maxdur + 60000)
  end
  local n = #ARGV - 10
  local fields = { 'n', n, 'h', 1, 'e', 0, 'a', 0, 'o', 0, 'by', ARGV[8] }
  for i = 0, n - 1 do
    fields[#fields + 1] = 'r' .. i
    fields[#fields + 1] = ARGV[11 + i]
  end
  redis.call('HSET', KEYS[4], unpack(fields))
  redis.call('PEXPIRE', KEYS[4], maxdur)
end
return 0
