"""The Lua scripts of the Redis Cluster store: each runs atomically inside one bucket's slot.

Every key of a bucket carries the hash tag ``{b<n>}`` (``B`` below is ``<prefix>:{b<n>}:``), so a
whole bucket lives in one slot and one script updates its sessions, records and deadlines
atomically:

* ``B s:<key>``   hash: ``id src site first last wall n to`` (one open session)
* ``B r:<key>``   list: the session's records (JSON, oldest first)
* ``B ids``       hash: public session id -> key
* ``B wall``      zset: key -> wall-clock deadline (``wall + to``)
* ``B log:<src>`` zset: key -> log-clock deadline (``last + to``), one per source
* ``B t:<site>``  zset: ``<key>:<i>`` -> record time (newest-first reads, tenant scope)
* ``B sites``     set of sites present;  ``B stat`` hash: ``records``, ``sessions``

Numbers: floats arrive as Python ``repr`` strings and are passed to ``redis.call`` as Lua numbers,
which Redis converts exactly; ``tostring``/``..`` (``%.14g``) is only ever applied to integers.
"""

from __future__ import annotations

# Shared helpers, prepended to the scripts that end sessions.
_COMMON = r"""
local B = ARGV[1]
local ended, deleted = 0, 0

local function load(K)
  local h = redis.call('HGETALL', B .. 's:' .. K)
  if #h == 0 then return false end
  local s = {}
  for j = 1, #h, 2 do s[h[j]] = h[j + 1] end
  s.first = tonumber(s.first); s.last = tonumber(s.last); s.wall = tonumber(s.wall)
  s.n = tonumber(s.n); s.to = tonumber(s.to)
  return s
end

local function finish(K, s)
  local tkey = B .. 't:' .. s.site
  local j = 1
  while j <= s.n do
    local m = {}
    for k = j, math.min(s.n, j + 499) do m[#m + 1] = K .. ':' .. k end
    redis.call('ZREM', tkey, unpack(m))
    j = j + 500
  end
  redis.call('UNLINK', B .. 'r:' .. K, B .. 's:' .. K)
  redis.call('ZREM', B .. 'wall', K)
  redis.call('ZREM', B .. 'log:' .. s.src, K)
  redis.call('HDEL', B .. 'ids', s.id)
  if redis.call('EXISTS', tkey) == 0 then redis.call('SREM', B .. 'sites', s.site) end
  redis.call('HINCRBY', B .. 'stat', 'records', -s.n)
  redis.call('HINCRBY', B .. 'stat', 'sessions', -1)
  ended = ended + 1
  deleted = deleted + s.n
end

-- End every session idle on its source's log clock or on the wall clock (at most max).
local function expire(clocks, now, max)
  local more = 0
  for src, c in pairs(clocks) do
    local ks = redis.call('ZRANGEBYSCORE', B .. 'log:' .. src, '-inf', c, 'LIMIT', 0, max)
    if #ks == max then more = 1 end
    for _, K in ipairs(ks) do
      local s = load(K)
      if not s then
        redis.call('ZREM', B .. 'log:' .. src, K)
      elseif c - s.last > s.to then
        finish(K, s)
      end
    end
  end
  local ks = redis.call('ZRANGEBYSCORE', B .. 'wall', '-inf', now, 'LIMIT', 0, max)
  if #ks == max then more = 1 end
  for _, K in ipairs(ks) do
    local s = load(K)
    if not s then
      redis.call('ZREM', B .. 'wall', K)
    elseif now - s.wall > s.to then
      finish(K, s)
    end
  end
  return more
end
"""

# KEYS[1] = B ids. ARGV: B, wall, nonce, max, nclk, nclk x (src, old clock or '', new clock),
# then one JSON array of [key, time, src, site, idle timeout, record JSON] (numbers as strings:
# cjson would round them to 14 digits).
# Returns {stored, started, ended, deleted, more}.
WRITE = _COMMON + r"""
local wall = tonumber(ARGV[2])
local nonce = ARGV[3]
local max = tonumber(ARGV[4])
local i = 5
local nclk = tonumber(ARGV[i]); i = i + 1
local old, new = {}, {}
for _ = 1, nclk do
  if ARGV[i + 1] ~= '' then old[ARGV[i]] = tonumber(ARGV[i + 1]) end
  new[ARGV[i]] = tonumber(ARGV[i + 2])
  i = i + 3
end
local batch = cjson.decode(ARGV[i])
local made, started, stored = 0, 0, 0
local sess, dirty = {}, {}

-- A session already over (log clock before this batch, or wall clock) is ended, not joined.
local function current(K)
  local v = sess[K]
  if v ~= nil then return v end
  local s = load(K)
  if s then
    local c = old[s.src]
    if (c and c - s.last > s.to) or (wall - s.wall > s.to) then
      finish(K, s)
      s = false
    end
  end
  sess[K] = s
  return s
end

for _, r in ipairs(batch) do
  local K, t, src, site = r[1], tonumber(r[2]), r[3], r[4]
  local to, js = tonumber(r[5]), r[6]
  local s = current(K)
  if s and (t - s.last > s.to or s.site ~= site) then
    finish(K, s)
    s = false
  end
  if not s then
    made = made + 1
    s = {id = string.sub(redis.sha1hex(nonce .. ':' .. made), 1, 20), src = src, site = site,
         first = t, last = t, wall = wall, n = 0, to = to}
    redis.call('HSET', B .. 'ids', s.id, K)
    redis.call('SADD', B .. 'sites', site)
    redis.call('HINCRBY', B .. 'stat', 'sessions', 1)
    started = started + 1
  else
    if t > s.last then s.last = t end
    if t < s.first then s.first = t end
    if wall > s.wall then s.wall = wall end
    s.to = to
  end
  sess[K] = s
  dirty[K] = s
  s.n = s.n + 1
  redis.call('RPUSH', B .. 'r:' .. K, js)
  redis.call('ZADD', B .. 't:' .. site, t, K .. ':' .. s.n)
  stored = stored + 1
end
redis.call('HINCRBY', B .. 'stat', 'records', stored)

for K, s in pairs(dirty) do
  if sess[K] == s then
    redis.call('HSET', B .. 's:' .. K, 'id', s.id, 'src', s.src, 'site', s.site,
               'first', s.first, 'last', s.last, 'wall', s.wall, 'n', s.n, 'to', s.to)
    redis.call('ZADD', B .. 'wall', s.wall + s.to, K)
    redis.call('ZADD', B .. 'log:' .. s.src, s.last + s.to, K)
  end
end
local more = expire(new, wall, max)
return {stored, started, ended, deleted, more}
"""

# KEYS[1] = B ids. ARGV: B, now, max, nclk, nclk x (src, clock).
# Returns {ended, deleted, more, records live, sessions live} of the bucket.
SWEEP = _COMMON + r"""
local now = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local clocks = {}
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  clocks[ARGV[i]] = tonumber(ARGV[i + 1])
  i = i + 2
end
local more = expire(clocks, now, max)
local st = redis.call('HMGET', B .. 'stat', 'records', 'sessions')
return {ended, deleted, more, tonumber(st[1] or 0), tonumber(st[2] or 0)}
"""

# KEYS[1] = B ids. ARGV: B, nids, ids..., nkeys, keys... Returns {ended, deleted}.
ERASE = _COMMON + r"""
local i = 2
local nids = tonumber(ARGV[i]); i = i + 1
for _ = 1, nids do
  local id = ARGV[i]; i = i + 1
  local K = redis.call('HGET', B .. 'ids', id)
  if K then
    local s = load(K)
    if s and s.id == id then finish(K, s) else redis.call('HDEL', B .. 'ids', id) end
  end
end
local nkeys = tonumber(ARGV[i]); i = i + 1
for _ = 1, nkeys do
  local K = ARGV[i]; i = i + 1
  local s = load(K)
  if s then finish(K, s) end
end
return {ended, deleted}
"""

# KEYS[1] = B ids. ARGV: B, limit, nsites (0: every site), sites...
# Returns {member, time, member, time, ...}: each site's newest ``limit`` records.
TOP = r"""
local B = ARGV[1]
local limit = tonumber(ARGV[2])
local sites = {}
local n = tonumber(ARGV[3])
if n == 0 then
  sites = redis.call('SMEMBERS', B .. 'sites')
else
  for j = 1, n do sites[j] = ARGV[3 + j] end
end
local out = {}
for _, site in ipairs(sites) do
  local r = redis.call('ZREVRANGEBYSCORE', B .. 't:' .. site, '+inf', '-inf', 'WITHSCORES',
                       'LIMIT', 0, limit)
  for j = 1, #r do out[#out + 1] = r[j] end
end
return out
"""

# KEYS[1] = B ids. ARGV: B, members ``<key>:<i>``... Returns {json, session id, ...}
# (false, false where a record has gone since TOP).
FETCH = r"""
local B = ARGV[1]
local out = {}
for j = 2, #ARGV do
  local m = ARGV[j]
  local cut = string.find(m, ':[^:]*$')
  local K, idx = string.sub(m, 1, cut - 1), tonumber(string.sub(m, cut + 1))
  out[#out + 1] = redis.call('LINDEX', B .. 'r:' .. K, idx - 1) or false
  out[#out + 1] = redis.call('HGET', B .. 's:' .. K, 'id') or false
end
return out
"""

# KEYS[1] = B ids. ARGV: B, session id. Returns the session's records, or {} if it is not here.
SESSION = r"""
local B = ARGV[1]
local K = redis.call('HGET', B .. 'ids', ARGV[2])
if not K then return {} end
if redis.call('HGET', B .. 's:' .. K, 'id') ~= ARGV[2] then return {} end
return redis.call('LRANGE', B .. 'r:' .. K, 0, -1)
"""

# KEYS[1] = the clocks hash. ARGV: src, time, src, time, ... (the batch's newest time per source)
# Returns {old HGETALL, new HGETALL}: log clocks only move forward.
CLOCKS = r"""
local old = redis.call('HGETALL', KEYS[1])
for j = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[j])
  if (not cur) or tonumber(ARGV[j + 1]) > tonumber(cur) then
    redis.call('HSET', KEYS[1], ARGV[j], ARGV[j + 1])
  end
end
return {old, redis.call('HGETALL', KEYS[1])}
"""

SCRIPTS: dict[str, str] = {
    "write": WRITE, "sweep": SWEEP, "erase": ERASE, "top": TOP, "fetch": FETCH,
    "session": SESSION, "clocks": CLOCKS,
}
