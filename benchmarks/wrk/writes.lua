-- HTTP writes for wrk (benchmarks/posts.py --wrk-writes): each request is made here, so the client costs little.
--
--   wrk -t1 -c64 -d8s --latency -s benchmarks/wrk/writes.lua http://127.0.0.1:PORT -- MODE DATA_FILE SEED
--
-- MODE is one of
--   reaction  PUT  /api/v1/posts/{id}/reaction  {"emoji": one of four}, a random post, a random user
--   comment   POST /api/v1/posts/{id}/comments  {"text": "... @someone"}, a random post, a random user
--   follow    PUT  /api/v1/users/{username}/follow, a random user following another random user (never itself)
--   create    POST /api/v1/posts  a photo post with @someone and two #hashtags; the pool's next (user, media id):
--             an upload belongs to one post, so each pool line serves once (past its end the pool starts over and
--             the server answers 422 invalid_media: the caller sizes the pool and reports them)
-- DATA_FILE has tab-separated lines: "u <token> <username>" (the users), "p <post id>" (the posts to react to and
-- comment on), "m <user number, from 1> <media id>" (the create pool, in order).
--
-- Every answer's status is counted, with the first few bodies of answers that are not 2xx; done() prints them as
-- "STATUS <code> <count>" and "SAMPLE <code> <body>" lines after wrk's own summary.

local mode
local tokens, names, posts, pool = {}, {}, {}, {}
local next_in_pool, made = 0, 0
-- globals: done() reads them from each thread (thread:get sees globals only)
statuses, samples = {}, {}
local nsamples = 0
local threads = {}
local emoji = { "👍", "😀", "🔥", "🤔" }

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  mode = args[1]
  math.randomseed(tonumber(args[3] or "1"))
  for line in io.lines(args[2]) do
    local kind, a, b = line:match("^(%a)\t([^\t]+)\t?([^\t]*)$")
    if kind == "u" then
      tokens[#tokens + 1] = "Bearer " .. a
      names[#names + 1] = b
    elseif kind == "p" then
      posts[#posts + 1] = a
    elseif kind == "m" then
      pool[#pool + 1] = { tonumber(a), b }
    end
  end
  if mode ~= "reaction" and mode ~= "comment" and mode ~= "follow" and mode ~= "create" then
    error("unknown mode " .. tostring(mode))
  end
end

local function headers(user)
  return { ["Authorization"] = tokens[user], ["Content-Type"] = "application/json" }
end

function request()
  made = made + 1
  if mode == "create" then
    next_in_pool = next_in_pool % #pool + 1
    local entry = pool[next_in_pool]
    local body = '{"type":"photo","caption":"wrk post ' .. made .. ' with @' .. names[math.random(#names)]
      .. ' #bench #tag' .. (made % 10) .. '","media_ids":["' .. entry[2] .. '"]}'
    return wrk.format("POST", "/api/v1/posts", headers(entry[1]), body)
  end
  local user = math.random(#tokens)
  if mode == "reaction" then
    local path = "/api/v1/posts/" .. posts[math.random(#posts)] .. "/reaction"
    return wrk.format("PUT", path, headers(user), '{"emoji":"' .. emoji[math.random(4)] .. '"}')
  elseif mode == "comment" then
    local path = "/api/v1/posts/" .. posts[math.random(#posts)] .. "/comments"
    local body = '{"text":"wrk comment ' .. made .. ' for @' .. names[math.random(#names)] .. '"}'
    return wrk.format("POST", path, headers(user), body)
  end
  local other = math.random(#names - 1)
  if other >= user then
    other = other + 1
  end
  return wrk.format("PUT", "/api/v1/users/" .. names[other] .. "/follow", { ["Authorization"] = tokens[user] })
end

function response(status, hdrs, body)
  statuses[status] = (statuses[status] or 0) + 1
  if (status < 200 or status > 299) and nsamples < 5 then
    nsamples = nsamples + 1
    samples[nsamples] = status .. " " .. (body or ""):sub(1, 300):gsub("[\r\n]", " ")
  end
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      io.write(string.format("STATUS %d %d\n", status, count))
    end
    for _, sample in ipairs(thread:get("samples")) do
      io.write("SAMPLE " .. sample .. "\n")
    end
  end
end
