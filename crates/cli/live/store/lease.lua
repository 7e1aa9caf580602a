-- c4route: probe leases (SPEC §9.4). Each gateway is probed by one
-- replica per interval: the replica that holds its lease. The holder
-- renews it each time it probes; when it dies the lease runs out and the
-- next replica to ask takes it over.
--
-- KEYS: one lease key per gateway due now
-- ARGV[1] this replica's id   ARGV[2] lease time in ms
-- Returns one 1 (this replica probes it) or 0 per key.
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('SET', k, ARGV[1], 'NX', 'PX', ARGV[2]) then
    out[i] = 1
  elseif redis.call('GET', k) == ARGV[1] then
    redis.call('PEXPIRE', k, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
