-- c4route: apply one call event to the call's shared record (SPEC §9.1,
-- §9.4), order-free and idempotent like the local record
-- (live/calls.rs): each event names the route it ends and, with `next`,
-- the route it starts; a route that has ended is never held again, and a
-- repeated event changes nothing.
--
-- KEYS[1] the call's record (hash)
-- ARGV[1] key prefix   ARGV[2] event: failed, answered or ended
-- ARGV[3] the dst key of the route it ends   ARGV[4] next's key, or ''
-- ARGV[5] max_duration in ms   ARGV[6] a unique attempt member (for next)
-- ARGV[7] Call-ID
-- Returns {0} unknown call, {1} unknown route, or
-- {2, ended (route index or -1), gateway, group, answered_before (0/1),
--  closed (0/1)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix, kind, dst, nxt = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local maxdur = tonumber(ARGV[5])
local call_id = ARGV[7]
local sep = '\31'
local rec = KEYS[1]

local n = tonumber(redis.call('HGET', rec, 'n') or '0')
if n == 0 then return { 0 } end
local f = redis.call('HMGET', rec, 'h', 'e', 'a', 'o')
local h, e, a, o = tonumber(f[1]), tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
-- A closed record is kept a minute as a tombstone (below): a call that
-- is over is unknown to events, as the local record says.
if o == 1 and h == 0 then return { 0 } end

local routes = {}
for i = 0, n - 1 do
  local s = redis.call('HGET', rec, 'r' .. i) or ''
  local r = {}
  for part in string.gmatch(s .. sep, '(.-)' .. sep) do r[#r + 1] = part end
  routes[i] = r
end
local function has(mask, i) return bit.band(mask, bit.lshift(1, i)) ~= 0 end
local function member(i) return call_id .. sep .. i end

-- The route it ends: the one holding a channel first, then one not
-- started yet (its own `next` has not arrived), then one already ended.
local i = -1
for pass = 1, 3 do
  for j = 0, n - 1 do
    if i < 0 and routes[j][3] == dst then
      if (pass == 1 and has(h, j)) or (pass == 2 and not has(e, j)) or pass == 3 then i = j end
    end
  end
end
if i < 0 then return { 1 } end

local done = -1
local answered_before = has(a, i) and 1 or 0
if kind == 'answered' then
  if answered_before == 0 and not has(e, i) then
    a = bit.bor(a, bit.lshift(1, i))
    done = i
  end
elseif not has(e, i) then
  if has(h, i) then
    redis.call('ZREM', prefix .. 'tc:' .. routes[i][1], member(i))
    redis.call('ZREM', prefix .. 'gc:' .. routes[i][2], member(i))
    h = bit.band(h, bit.bnot(bit.lshift(1, i)))
  end
  e = bit.bor(e, bit.lshift(1, i))
  done = i
end

if kind == 'failed' and nxt ~= '' then
  -- The route it starts: one not started yet, after this one if possible.
  local best = -1
  for j = 0, n - 1 do
    if routes[j][3] == nxt and not has(h, j) and not has(e, j) then
      if best < 0 or (best < i and j >= i) then best = j end
    end
  end
  if best >= 0 then
    local r = routes[best]
    local tc, gc = prefix .. 'tc:' .. r[1], prefix .. 'gc:' .. r[2]
    redis.call('ZADD', tc, now + maxdur, member(best))
    redis.call('ZADD', gc, now + maxdur, member(best))
    redis.call('PEXPIRE', tc, maxdur + 60000)
    redis.call('PEXPIRE', gc, maxdur + 60000)
    local cps = prefix .. 'cps:' .. r[1]
    redis.call('ZREMRANGEBYSCORE', cps, '-inf', now - 1000)
    redis.call('ZADD', cps, now, ARGV[6])
    redis.call('PEXPIRE', cps, 2000)
    h = bit.bor(h, bit.lshift(1, best))
  end
elseif kind ~= 'answered' then
  o = 1
end

local closed = 0
if o == 1 and h == 0 then
  -- Kept a minute, closed, rather than deleted: a replica that writes
  -- back its open calls after the store restarted empty (restore.lua)
  -- may still hold this call open locally until this event reaches it
  -- through the stream, and must not bring it back.
  redis.call('HSET', rec, 'h', h, 'e', e, 'a', a, 'o', o)
  redis.call('PEXPIRE', rec, 60000)
  closed = 1
else
  redis.call('HSET', rec, 'h', h, 'e', e, 'a', a, 'o', o)
  redis.call('PEXPIRE', rec, maxdur)
end
if done < 0 then return { 2, -1, '', '', answered_before, closed } end
return { 2, done, routes[done][2], routes[done][4], answered_before, closed }
