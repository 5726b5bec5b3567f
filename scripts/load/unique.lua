-- A different user, action and document on every request: the uncached path
-- (1,000 users x 10,000 documents x 2 actions: no repeats within a run).
local counter = 0
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("offset", threads)
end

init = function()
  counter = tonumber(offset) * 1000003
end

request = function()
  counter = counter + 1
  -- Mixed radix over users, documents and actions: 20 million distinct
  -- requests before any repeats.
  local action = (counter % 2 == 0) and "read" or "write"
  local u = math.floor(counter / 2) % 1000
  local d = math.floor(counter / 2000) % 10000
  local body = string.format(
    '{"principal":"Portcullis::User::\\"u%d\\"","action":"Docs::Action::\\"%s\\"","resource":"Docs::Document::\\"d%d\\"","context":{"mfa":false}}',
    u, action, d)
  return wrk.format("POST", "/v1/is_authorized", {["Content-Type"] = "application/json"}, body)
end

done = dofile(os.getenv("LOAD_REPORT") or "scripts/load/report.lua")
