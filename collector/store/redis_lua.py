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
# Returns {stored, started, ended, deleted, more, {session id of each row, in order}}.
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
local sess, dirty, rowids = {}, {}, {}

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
  rowids[stored] = s.id
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
return {stored, started, ended, deleted, more, rowids}
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

# KEYS[1] = B ids. ARGV: B, lo, hi (ZRANGEBYSCORE bounds: '-inf', '(1.5', ...), back (1: also
# each site's newest record before lo, so a reader knows whether records reach back that far),
# nsites (0: every site), sites... Returns, per session with records in range, a flat run
# {key, id, src, site, first, last, wall, n, count, json x count}.
SCAN = r"""
local B = ARGV[1]
local lo, hi, back = ARGV[2], ARGV[3], ARGV[4] == '1'
local sites = {}
local n = tonumber(ARGV[5])
if n == 0 then
  sites = redis.call('SMEMBERS', B .. 'sites')
else
  for j = 1, n do sites[j] = ARGV[5 + j] end
end
local want, order = {}, {}
local function add(m)
  local cut = string.find(m, ':[^:]*$')
  local K, idx = string.sub(m, 1, cut - 1), tonumber(string.sub(m, cut + 1))
  local w = want[K]
  if not w then w = {}; want[K] = w; order[#order + 1] = K end
  w[#w + 1] = idx
end
for _, site in ipairs(sites) do
  local tkey = B .. 't:' .. site
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', tkey, lo, hi)) do add(m) end
  if back and lo ~= '-inf' then
    for _, m in ipairs(redis.call('ZREVRANGEBYSCORE', tkey, '(' .. lo, '-inf', 'LIMIT', 0, 1)) do
      add(m)
    end
  end
end
local out = {}
for _, K in ipairs(order) do
  local h = redis.call('HMGET', B .. 's:' .. K, 'id', 'src', 'site', 'first', 'last', 'wall', 'n')
  if h[1] then
    local idx = want[K]
    local recs
    if #idx >= tonumber(h[7]) then
      recs = redis.call('LRANGE', B .. 'r:' .. K, 0, -1)
    else
      table.sort(idx)
      recs = {}
      for _, j in ipairs(idx) do
        local r = redis.call('LINDEX', B .. 'r:' .. K, j - 1)
        if r then recs[#recs + 1] = r end
      end
    end
    out[#out + 1] = K
    for j = 1, 7 do out[#out + 1] = h[j] end
    out[#out + 1] = #recs
    for _, r in ipairs(recs) do out[#out + 1] = r end
  end
end
return out
"""

# The aggregates (``collector.store.redis_agg``): one hash per site and hour,
# ``<prefix>:{a:<site>:<hour>}``, holding that hour's minute rows and, once rolled up, its hour
# row. Field ``<t> US <res> US <dim> US <value>`` (US = \x1f) holds one row's counters, sparse:
# ``<counter name>:<value>;...`` (``%.17g``: integers and the float sum round-trip exactly; a
# counter added by a later version is simply absent from older rows, i.e. 0);
# field ``<t> US <res>`` holds the wall-clock time the row was last written.
_AGG_COMMON = r"""
local function parse(s)
  local t = {}
  if s then
    for c, v in string.gmatch(s, '([%w_]+):([^;]+)') do t[c] = tonumber(v) end
  end
  return t
end
local function enc(t)
  local out = {}
  for c, v in pairs(t) do out[#out + 1] = c .. ':' .. string.format('%.17g', v) end
  return table.concat(out, ';')
end
"""

# KEYS[1] = the hour's hash. ARGV: ttl ms, wall, nupd, nupd x minute prefix (``<t> US 60``),
# then (field, sparse deltas) pairs. Adds the deltas, marks the minutes written at ``wall`` and
# keeps the hash ``ttl`` ms past now.
AGG_ADD = _AGG_COMMON + r"""
local ttl, wall = ARGV[1], ARGV[2]
local nupd = tonumber(ARGV[3])
local i = 4
for _ = 1, nupd do
  redis.call('HSET', KEYS[1], ARGV[i], wall)
  i = i + 1
end
while i < #ARGV do
  local row = parse(redis.call('HGET', KEYS[1], ARGV[i]))
  for c, d in pairs(parse(ARGV[i + 1])) do row[c] = (row[c] or 0) + d end
  redis.call('HSET', KEYS[1], ARGV[i], enc(row))
  i = i + 2
end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""

# KEYS[1] = the hour's hash. ARGV: hour, log cut, wall cut, delete cut (log), delete wall cut,
# the counter that takes the maximum (sessions_active: the hour keeps the busiest minute).
# Rolls minutes older than the cuts into the hour row and deletes rows past the retention.
# Returns {minute rows rolled up, rows deleted, fields left}.
AGG_MAINTAIN = _AGG_COMMON + r"""
local hour = ARGV[1]
local log_cut, wall_cut = tonumber(ARGV[2]), tonumber(ARGV[3])
local del_cut, del_wall = tonumber(ARGV[4]), tonumber(ARGV[5])
local imax = ARGV[6]
local h = redis.call('HGETALL', KEYS[1])
local upd = {}
for j = 1, #h, 2 do
  local f = h[j]
  local a = string.find(f, '\31')
  if not string.find(f, '\31', a + 1) then upd[f] = tonumber(h[j + 1]) end
end
local hkey = hour .. '\31' .. '3600'
local rolled, deleted, gone, merged = 0, 0, {}, {}
local hour_upd = upd[hkey] or 0
for j = 1, #h, 2 do
  local f, v = h[j], h[j + 1]
  local a = string.find(f, '\31')
  local b = string.find(f, '\31', a + 1)
  local t, res = tonumber(string.sub(f, 1, a - 1)), tonumber(string.sub(f, a + 1, (b or 0) - 1))
  local u = upd[string.sub(f, 1, (b or 0) - 1)] or 0
  if t + res <= del_cut or u < del_wall then
    gone[#gone + 1] = f
    if b then deleted = deleted + 1 end
  elseif res == 60 and (t < log_cut or u < wall_cut) then
    gone[#gone + 1] = f
    if b then
      rolled = rolled + 1
      local hf = hkey .. string.sub(f, b)
      local row = merged[hf]
      if not row then row = parse(redis.call('HGET', KEYS[1], hf)); merged[hf] = row end
      for c, d in pairs(parse(v)) do
        if c == imax then
          if d > (row[c] or 0) then row[c] = d end
        else
          row[c] = (row[c] or 0) + d
        end
      end
    elseif u > hour_upd then
      hour_upd = u
    end
  end
end
for j = 1, #gone, 500 do
  redis.call('HDEL', KEYS[1], unpack(gone, j, math.min(#gone, j + 499)))
end
for hf, row in pairs(merged) do redis.call('HSET', KEYS[1], hf, enc(row)) end
if rolled > 0 then redis.call('HSET', KEYS[1], hkey, hour_upd) end
return {rolled, deleted, redis.call('HLEN', KEYS[1])}
"""

SCRIPTS: dict[str, str] = {
    "write": WRITE, "sweep": SWEEP, "erase": ERASE, "top": TOP, "fetch": FETCH,
    "session": SESSION, "clocks": CLOCKS, "scan": SCAN,
}
AGG_SCRIPTS: dict[str, str] = {"agg_add": AGG_ADD, "agg_maintain": AGG_MAINTAIN}
