"""Lua scripts of the Redis ``TurnStore`` (each runs as ONE round trip, atomically).

Key layout under the prefix ``p``: ``{p}s:{session}:h`` history list (JSON entries, oldest
first), ``{p}s:{session}:m`` session meta, ``{p}emb:{key}`` query embeddings,
``{p}srch:{sha1}`` search payloads, ``{p}cv:{collection}`` collection versions (no TTL).

The meta value is one flag byte followed by the scope as a JSON list: ``1`` when the history
list must be non-empty, ``0`` when the session has no messages. A flag ``1`` with no list means
the list was evicted or expired first, which is a miss, never an empty history.

Scripts touch keys they do not declare (versions, searches), so they suit a single Redis
server or a primary with replicas, not Redis Cluster.
"""

from __future__ import annotations

import hashlib

# Byte-wise string order: Lua's ``<`` uses strcoll and Redis sets LC_COLLATE from the
# environment, so a locale could order ids differently from Python.
_BYTEWISE = """
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
"""

_RAISE_VERSION = """
local function raise_version(key, v)
  local cur = redis.call('GET', key)
  if not cur or tonumber(cur) < tonumber(v) then
    redis.call('SET', key, v)
    return 1
  end
  return 0
end
"""

# KEYS: history, meta, [embedding]
# ARGV: history_limit, scope_hint_json|'', prefix, query_digest|'', has_embedding (0/1),
#       n_versions, n_dirty, (collection, version) * n_versions, session * n_dirty
READ = (
    _BYTEWISE
    + _RAISE_VERSION
    + """
local prefix = ARGV[3]
local pos = 8
-- Left over from calls made while Redis was unreachable (see RedisTurnStore).
for _ = 1, tonumber(ARGV[6]) do
  raise_version(prefix .. 'cv:' .. ARGV[pos], ARGV[pos + 1])
  pos = pos + 2
end
for _ = 1, tonumber(ARGV[7]) do
  redis.call('DEL', prefix .. 's:' .. ARGV[pos] .. ':h', prefix .. 's:' .. ARGV[pos] .. ':m')
  pos = pos + 1
end

local meta = redis.call('GET', KEYS[2])
local scope = nil
local history = false
if meta then
  scope = cjson.decode(string.sub(meta, 2))
  local limit = tonumber(ARGV[1])
  if string.sub(meta, 1, 1) == '1' and redis.call('EXISTS', KEYS[1]) == 0 then
    history = false
  elseif limit > 0 then
    history = redis.call('LRANGE', KEYS[1], -limit, -1)
  else
    history = {}
  end
elseif ARGV[2] ~= '' then
  scope = cjson.decode(ARGV[2])
end

local embedding = false
if ARGV[5] == '1' then embedding = redis.call('GET', KEYS[3]) end

local versions = {}
local search = false
if scope then
  local parts = {}
  local complete = true
  for i, cid in ipairs(scope) do
    local v = redis.call('GET', prefix .. 'cv:' .. cid)
    versions[i] = v
    if v then parts[#parts + 1] = cid .. ':' .. v else complete = false end
  end
  if complete and ARGV[4] ~= '' then
    table.sort(parts, before)
    local digest = redis.sha1hex(ARGV[4] .. '|' .. table.concat(parts, ','))
    search = redis.call('GET', prefix .. 'srch:' .. digest)
  end
end
return {meta or false, history, embedding, search, versions}
"""
)

# KEYS: history, meta, [embedding], [search]
# ARGV: max_messages, history_ttl, cache_ttl, scope_json, refill_mode (0 none, 1 if the
#       history is unknown, 2 always), n_refill, n_appended, has_embedding, has_search,
#       [embedding], [search], refill entries, appended entries
# Returns 1 when the history was updated, 0 when it was left alone (unknown, no refill).
WRITE = """
local hist, meta_key = KEYS[1], KEYS[2]
local cache_ttl = tonumber(ARGV[3])
local pos, k = 10, 3
if ARGV[8] == '1' then
  redis.call('SET', KEYS[k], ARGV[pos], 'EX', cache_ttl)
  pos, k = pos + 1, k + 1
end
if ARGV[9] == '1' then
  redis.call('SET', KEYS[k], ARGV[pos], 'EX', cache_ttl)
  pos = pos + 1
end

local function push(first, count)
  for i = first, first + count - 1, 500 do
    redis.call('RPUSH', hist, unpack(ARGV, i, math.min(i + 499, first + count - 1)))
  end
end

local meta = redis.call('GET', meta_key)
local known = meta and (string.sub(meta, 1, 1) == '0' or redis.call('EXISTS', hist) == 1)
local mode, nrefill = ARGV[5], tonumber(ARGV[6])
-- A refill loaded from the DB may be older than what a concurrent turn already cached;
-- only a forced refill replaces a history the store knows.
if mode == '2' or (mode == '1' and not known) then
  redis.call('DEL', hist)
  push(pos, nrefill)
  known = true
end
pos = pos + nrefill
if not known then return 0 end

local ttl = tonumber(ARGV[2])
push(pos, tonumber(ARGV[7]))
redis.call('LTRIM', hist, -tonumber(ARGV[1]), -1)
local flag = '0'
if redis.call('EXPIRE', hist, ttl) == 1 then flag = '1' end
redis.call('SET', meta_key, flag .. ARGV[4], 'EX', ttl)
return 1
"""

# KEYS: none; ARGV: prefix, (collection, version) * n. Returns how many were raised.
PUBLISH = (
    _RAISE_VERSION
    + """
local raised = 0
for i = 2, #ARGV, 2 do
  raised = raised + raise_version(ARGV[1] .. 'cv:' .. ARGV[i], ARGV[i + 1])
end
return raised
"""
)


def search_digest(query_digest: str, scope: list[str], versions: dict[str, int]) -> str | None:
    """The search key's hash, exactly as the READ script derives it; None if a version is unknown.

    sha1(query_digest | sorted "collection:version" parts joined by ","), sorted by UTF-8 bytes.
    """
    parts: list[str] = []
    for cid in scope:
        version = versions.get(cid)
        if version is None:
            return None
        parts.append(f"{cid}:{version}")
    parts.sort(key=lambda part: part.encode())
    digest = hashlib.sha1(f"{query_digest}|{','.join(parts)}".encode(), usedforsecurity=False)
    return digest.hexdigest()
