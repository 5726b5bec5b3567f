-- A new key-value write on every request (admin API): shows how long writes
-- are held while a store switch copies. Needs LOAD_ADMIN_TOKEN.
local counter = 0
local threads = 0
local token = os.getenv("LOAD_ADMIN_TOKEN") or ""

setup = function(thread)
  threads = threads + 1
  thread:set("offset", threads)
end

init = function()
  counter = tonumber(offset) * 100000000
end

request = function()
  counter = counter + 1
  return wrk.format("POST", "/storage/bench/k" .. counter,
    {["Authorization"] = "Bearer " .. token}, "value-" .. counter)
end

done = dofile(os.getenv("LOAD_REPORT") or "scripts/load/report.lua")
