-- GCRA over several buckets at once, all or nothing.
--
-- KEYS[i]      the bucket of limit i; its value is the limit's theoretical
--              arrival time (TAT), microseconds since the epoch.
-- ARGV[2i-1]   limit i's emission interval T (period / rate), microseconds.
-- ARGV[2i]     limit i's tolerance, T * burst, microseconds.
--
-- Returns {allowed, now, then per limit: remaining, reset_after, retry_after}
-- (times in microseconds; integers, because Redis truncates Lua numbers).
-- Microsecond timestamps (~1.8e15) are exact in Lua's doubles (< 2^53).

-- Needed before writing after TIME on Redis < 5; a deprecated no-op since
-- (effects replication is the default), guarded in case it is ever removed.
if redis.replicate_commands then redis.replicate_commands() end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS

-- First pass: read every bucket and decide. Nothing is written unless every
-- limit admits the request, so a refusal by one limit costs the others nothing.
local tats = {}
local allowed = true
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  tats[i] = tat
  if tat + interval - tolerance > now then allowed = false end
end

local out = {allowed and 1 or 0, now}
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tats[i]
  -- Time until this limit alone would admit one more request.
  local retry = tat + interval - tolerance - now
  if retry < 0 then retry = 0 end
  if allowed then
    tat = tat + interval
    -- The key is worthless once its TAT is in the past: let Redis drop it then.
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
  end
  local reset = tat - now
  local remaining = math.floor((tolerance - reset) / interval)
  if remaining < 0 then remaining = 0 end
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end
return out
