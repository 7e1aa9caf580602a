-- c4route: write back one call this replica holds open, after the store
-- came back empty (it restarted without persistence, SPEC §9.4): the
-- record as the replica's own copy has it, and the channels its held
-- routes take. A record the store still has is left as it is.
--
-- KEYS[1] the call's record (hash)
-- ARGV[1] key prefix   ARGV[2] Call-ID   ARGV[3] max_duration in ms
-- ARGV[4] holding bits   ARGV[5] ended bits   ARGV[6] answered bits
-- ARGV[7] replica id   ARGV[8..] routes "trunk\31gateway\31dst\31group"
-- Returns 1 written, 0 already there.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix, call_id = ARGV[1], ARGV[2]
local maxdur = tonumber(ARGV[3])
local h = tonumber(ARGV[4])
local sep = '\31'
local n = #ARGV - 7
local fields = { 'n', n, 'h', h, 'e', ARGV[5], 'a', ARGV[6], 'o', 0, 'by', ARGV[7] }
for i = 0, n - 1 do
  local s = ARGV[8 + i]
  fields[#fields + 1] = 'r' .. i
  fields[#fields + 1] = s
  if bit.band(h, bit.lshift(1, i)) ~= 0 then
    local r = {}
    for part in string.gmatch(s .. sep, '(.-)' .. sep) do r[#r + 1] = part end
    local m = call_id .. sep .. i
    local tc, gc = prefix .. 'tc:' .. r[1], prefix .. 'gc:' .. r[2]
    redis.call('ZADD', tc, now + maxdur, m)
    redis.call('ZADD', gc, now + maxdur, m)
    redis.call('PEXPIRE', tc, maxdur + 60000)
    redis.call('PEXPIRE', gc, maxdur + 60000)
  end
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], maxdur)
return 1
