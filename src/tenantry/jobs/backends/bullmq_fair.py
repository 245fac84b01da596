"""Fair scheduling and company views on BullMQ's keys: Tenantry's own Lua scripts.

The design is in tenantry/jobs/fairness.py. BullMQ (Node, Python or Pro) has nothing
that holds a job back per company, so these scripts are Tenantry's own; they create
jobs exactly as BullMQ's addStandardJob does (same hash fields, same events), and
hand them to BullMQ's own `wait` list, after which BullMQ's scripts do the rest.

Keys beside BullMQ's, for queue prefix K = `<prefix>:<queue>:`:
  K fair:all            zset  every staged job id, score = staging sequence (FIFO)
  K fair:seq            int   the staging sequence
  K fair:s:<company>    zset  the company's staged job ids, score = sequence
  K fair:ring           list  companies with staged jobs, each once: the round robin
  K fair:credit         hash  company -> turns left of its weight (a cut-short turn)
  K fair:limits         hash  company -> "weight|concurrency|per_minute" (empty: none)
  K fair:a:<company>    zset  the company's concurrency slots: job id -> deadline (ms)
  K fair:r:<company>    zset  the company's dispatches in the last minute: id -> ms
  K fair:i:<company>    zset  every job Tenantry added for the company: id -> timestamp
The index `fair:i` is what makes a company's view cost its own jobs, not the queue's:
each listed id's state is read from BullMQ's own lists (so it is exact whatever moved
the job), and ids whose job is gone are pruned (on reads, and two sampled per add).

Every script takes K as KEYS[1] and builds the other keys from it, as BullMQ's own
scripts build a job's keys from theirs: a cluster client sends the call to the node of
K's slot, and on a cluster K holds the queue's hash tag (`bull:{email}:`), so every key
the script touches, per company and per job too, is in that one slot.
"""

from __future__ import annotations

from typing import Any

_COMMON = r"""
local rcall = redis.call

local function limitsOf(prefix, company)
  local raw = rcall("HGET", prefix .. "fair:limits", company)
  if not raw then return 1, nil, nil end
  local w, c, r = string.match(raw, "^(%d+)|(%d*)|(%d*)$")
  if not w then return 1, nil, nil end
  return tonumber(w) or 1, tonumber(c), tonumber(r)
end

-- Slots still held: a job finished or gone gives its slot back; one neither locked
-- by a worker nor in `wait` past its deadline (a dead worker's) is dropped.
local function liveSlots(prefix, company, now, grace)
  local key = prefix .. "fair:a:" .. company
  local members = rcall("ZRANGE", key, 0, -1, "WITHSCORES")
  local n = 0
  for i = 1, #members, 2 do
    local id = members[i]
    local deadline = tonumber(members[i + 1])
    local jobKey = prefix .. id
    local keep = false
    if rcall("EXISTS", jobKey) == 0 or rcall("HEXISTS", jobKey, "finishedOn") == 1 then
      keep = false
    elseif rcall("EXISTS", jobKey .. ":lock") == 1 then
      keep = true
      rcall("ZADD", key, now + grace, id)
    elseif deadline > now then
      keep = true
    elseif rcall("LPOS", prefix .. "wait", id) then
      keep = true
      rcall("ZADD", key, now + grace, id)
    end
    if keep then n = n + 1 else rcall("ZREM", key, id) end
  end
  return n
end

local function rateLeft(prefix, company, now, perMinute)
  local key = prefix .. "fair:r:" .. company
  rcall("ZREMRANGEBYSCORE", key, "-inf", now - 60000)
  return perMinute - rcall("ZCARD", key)
end

-- Move up to `budget` staged jobs into `wait`, round robin by weight, skipping
-- companies at a limit. Returns how many moved.
local function dispatch(prefix, now, budget, grace)
  if budget <= 0 then return 0 end
  local meta = prefix .. "meta"
  if rcall("HEXISTS", meta, "paused") == 1 then return 0 end
  local ring = prefix .. "fair:ring"
  local credits = prefix .. "fair:credit"
  local wait = prefix .. "wait"
  local events = prefix .. "events"
  local maxEvents = rcall("HGET", meta, "opts.maxLenEvents") or 10000
  local moved = 0
  local idle = 0
  while moved < budget do
    local size = rcall("LLEN", ring)
    if size == 0 or idle >= size then break end
    local company = rcall("LPOP", ring)
    local staged = prefix .. "fair:s:" .. company
    local w, c, r = limitsOf(prefix, company)
    local credit = tonumber(rcall("HGET", credits, company)) or w
    if credit > w then credit = w end
    local take = math.min(credit, budget - moved)
    if c then take = math.min(take, c - liveSlots(prefix, company, now, grace)) end
    if r then take = math.min(take, rateLeft(prefix, company, now, r)) end
    local got = 0
    if take > 0 then
      local popped = rcall("ZPOPMIN", staged, take)
      for i = 1, #popped, 2 do
        local id = popped[i]
        rcall("ZREM", prefix .. "fair:all", id)
        if rcall("EXISTS", prefix .. id) == 1 then
          rcall("LPUSH", wait, id)
          rcall("XADD", events, "MAXLEN", "~", maxEvents, "*", "event", "waiting", "jobId", id)
          if c then rcall("ZADD", prefix .. "fair:a:" .. company, now + grace, id) end
          if r then
            rcall("ZADD", prefix .. "fair:r:" .. company, now, id)
            rcall("PEXPIRE", prefix .. "fair:r:" .. company, 61000)
          end
          got = got + 1
        end
      end
    end
    credit = credit - got
    local left = rcall("ZCARD", staged)
    if left == 0 then
      rcall("HDEL", credits, company)
    elseif got > 0 and credit > 0 and moved + got >= budget then
      -- the budget ended its turn early: it keeps its place and the rest of its turn
      rcall("LPUSH", ring, company)
      rcall("HSET", credits, company, credit)
    else
      rcall("HDEL", credits, company)
      rcall("RPUSH", ring, company)
    end
    if got > 0 then idle = 0 else idle = idle + 1 end
    moved = moved + got
  end
  if moved > 0 then rcall("ZADD", prefix .. "marker", 0, "0") end
  return moved
end
"""

# KEYS: K.  ARGV: BullMQ's packed args, job data JSON, packed opts (from bullmq's own
# Scripts.addJobArgs), timestamp, company, "1" fair / "0" FIFO, wait depth, grace ms.
ADD = (
    _COMMON
    + r"""
local args = cmsgpack.unpack(ARGV[1])
local opts = cmsgpack.unpack(ARGV[3])
local prefix = KEYS[1]
local timestamp = tonumber(ARGV[4])
local company = ARGV[5]
local meta = prefix .. "meta"
local events = prefix .. "events"
local jobCounter = rcall("INCR", prefix .. "id")
local maxEvents = rcall("HGET", meta, "opts.maxLenEvents")
if not maxEvents then
  maxEvents = 10000
  rcall("HSET", meta, "opts.maxLenEvents", maxEvents)
end
local jobId = args[2]
if jobId == "" then jobId = jobCounter .. "" end
local jobKey = prefix .. jobId
if rcall("EXISTS", jobKey) == 1 then
  rcall("XADD", events, "MAXLEN", "~", maxEvents, "*", "event", "duplicated", "jobId", jobId)
  return jobId
end
rcall("HMSET", jobKey, "name", args[3], "data", ARGV[2], "opts", cjson.encode(opts),
  "timestamp", timestamp, "delay", 0, "priority", 0)
rcall("XADD", events, "*", "event", "added", "jobId", jobId, "name", args[3])
-- The company's index, pruned of up to three ids whose job is gone.
local index = prefix .. "fair:i:" .. company
local sample = rcall("ZRANDMEMBER", index, 2)
local oldest = rcall("ZRANGE", index, 0, 0)
if oldest[1] then sample[#sample + 1] = oldest[1] end
for _, old in ipairs(sample) do
  if rcall("EXISTS", prefix .. old) == 0 then rcall("ZREM", index, old) end
end
rcall("ZADD", index, timestamp, jobId)
local wait = prefix .. "wait"
if ARGV[6] == "1" then
  local seq = rcall("INCR", prefix .. "fair:seq")
  local staged = prefix .. "fair:s:" .. company
  if rcall("ZADD", staged, seq, jobId) == 1 and rcall("ZCARD", staged) == 1 then
    rcall("RPUSH", prefix .. "fair:ring", company)
  end
  rcall("ZADD", prefix .. "fair:all", seq, jobId)
  local depth = tonumber(ARGV[7])
  local low = depth - rcall("LLEN", wait)
  if low > 0 then dispatch(prefix, timestamp, low, tonumber(ARGV[8])) end
else
  rcall("LPUSH", wait, jobId)
  if rcall("HEXISTS", meta, "paused") == 0 then rcall("ZADD", prefix .. "marker", 0, "0") end
  rcall("XADD", events, "MAXLEN", "~", maxEvents, "*", "event", "waiting", "jobId", jobId)
end
return jobId
"""
)

# KEYS: K.  ARGV: now (ms), wait depth, grace ms.
DISPATCH = (
    _COMMON
    + r"""
local prefix = KEYS[1]
local budget = tonumber(ARGV[2]) - rcall("LLEN", prefix .. "wait")
return dispatch(prefix, tonumber(ARGV[1]), budget, tonumber(ARGV[3]))
"""
)

# The states of one chunk of a company's index. KEYS: K.  ARGV: company, offset, count,
# "1" newest first. Returns {scanned, id1, state1, id2, state2, ...}; state "" = gone.
STATES = r"""
local rcall = redis.call
local prefix, company = KEYS[1], ARGV[1]
local offset, count = tonumber(ARGV[2]), tonumber(ARGV[3])
local index = prefix .. "fair:i:" .. company
local ids
if ARGV[4] == "1" then
  ids = rcall("ZREVRANGE", index, offset, offset + count - 1)
else
  ids = rcall("ZRANGE", index, offset, offset + count - 1)
end
local staged = prefix .. "fair:s:" .. company
local out = {#ids}
for _, id in ipairs(ids) do
  local state
  if rcall("ZSCORE", staged, id) then state = "waiting"
  elseif rcall("ZSCORE", prefix .. "completed", id) then state = "completed"
  elseif rcall("ZSCORE", prefix .. "failed", id) then state = "failed"
  elseif rcall("ZSCORE", prefix .. "delayed", id) then state = "delayed"
  elseif rcall("ZSCORE", prefix .. "prioritized", id) then state = "waiting"
  elseif rcall("EXISTS", prefix .. id) == 0 then state = ""
  elseif rcall("EXISTS", prefix .. id .. ":lock") == 1 then state = "active"
  elseif rcall("LPOS", prefix .. "active", id) then state = "active"
  elseif rcall("ZSCORE", prefix .. "waiting-children", id) then state = "waiting-children"
  else state = "waiting" end  -- in `wait`: every other place was looked at
  out[#out + 1] = id
  out[#out + 1] = state
end
return out
"""

# Remove staged jobs created at or before a cutoff. KEYS: K.  ARGV: cutoff ms, limit.
CLEAN_STAGED = r"""
local rcall = redis.call
local prefix, cutoff, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local all = prefix .. "fair:all"
local removed = {}
local offset = 0
local newer = false  -- staging order is creation order: stop at the first newer job
while not newer and (limit <= 0 or #removed < limit) do
  local ids = rcall("ZRANGE", all, offset, offset + 499)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    if limit > 0 and #removed >= limit then break end
    local jobKey = prefix .. id
    local fields = rcall("HMGET", jobKey, "timestamp", "data")
    local stamp = tonumber(fields[1]) or 0
    if stamp <= cutoff then
      local ok, data = pcall(cjson.decode, fields[2] or "{}")
      local company = ok and type(data) == "table" and data["companyId"] or nil
      rcall("ZREM", all, id)
      if type(company) == "string" then
        local staged = prefix .. "fair:s:" .. company
        rcall("ZREM", staged, id)
        rcall("ZREM", prefix .. "fair:i:" .. company, id)
        if rcall("ZCARD", staged) == 0 then
          rcall("LREM", prefix .. "fair:ring", 0, company)
          rcall("HDEL", prefix .. "fair:credit", company)
        end
      end
      rcall("DEL", jobKey, jobKey .. ":logs")
      rcall("XADD", prefix .. "events", "*", "event", "removed", "jobId", id, "prev", "wait")
      removed[#removed + 1] = id
    else
      newer = true
      break
    end
  end
end
return removed
"""


# A queue's backlog and totals (QueueFigures), without reading every job: the oldest
# waiting job is one of the next in line of each place, so four jobs are looked at.
# KEYS: K.  ARGV: now (ms). Returns {waiting, due since (ms, -1: none), completed, failed}.
FIGURES = r"""
local rcall = redis.call
local prefix, now = KEYS[1], tonumber(ARGV[1])
local since = nil
local function consider(at)
  if at and (not since or at < since) then since = at end
end
-- When a job was due: its creation, plus its delay option (promotion keeps the stamp).
local function dueOf(id)
  if not id then return nil end
  local fields = rcall("HMGET", prefix .. id, "timestamp", "opts")
  local stamp = tonumber(fields[1])
  if not stamp then return nil end
  local ok, opts = pcall(cjson.decode, fields[2] or "{}")
  local delay = ok and type(opts) == "table" and tonumber(opts["delay"]) or 0
  return stamp + delay
end
local wait, prioritized = prefix .. "wait", prefix .. "prioritized"
consider(dueOf(rcall("LINDEX", wait, -1)))  -- workers take from the tail: FIFO's oldest
consider(dueOf(rcall("ZRANGE", prioritized, 0, 0)[1]))
consider(dueOf(rcall("ZRANGE", prefix .. "fair:all", 0, 0)[1]))  -- staging is FIFO
-- A delayed job's score is its due time * 0x1000: once due, it waits (for a worker
-- to promote it), since its due time.
local due = rcall("ZCOUNT", prefix .. "delayed", 0, (now + 1) * 0x1000 - 1)
if due > 0 then
  local first = rcall("ZRANGE", prefix .. "delayed", 0, 0, "WITHSCORES")
  consider(math.floor(tonumber(first[2]) / 0x1000))
end
local waiting = rcall("LLEN", wait) + rcall("ZCARD", prioritized)
  + rcall("ZCARD", prefix .. "fair:all") + due
-- BullMQ's own finished-job metrics (workers started with the `metrics` option).
local completed = tonumber(rcall("HGET", prefix .. "metrics:completed", "count")) or 0
local failed = tonumber(rcall("HGET", prefix .. "metrics:failed", "count")) or 0
return {waiting, since or -1, completed, failed}
"""


def register(client: Any) -> dict[str, Any]:
    """The scripts, registered on a redis-py client (EVALSHA, loaded on first use)."""
    return {
        "add": client.register_script(ADD),
        "dispatch": client.register_script(DISPATCH),
        "states": client.register_script(STATES),
        "clean_staged": client.register_script(CLEAN_STAGED),
        "figures": client.register_script(FIGURES),
    }
