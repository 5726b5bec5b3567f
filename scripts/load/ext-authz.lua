-- Envoy-style ext_authz checks with a bearer token (LOAD_TOKEN): the same
-- document every time (cached), or with LOAD_UNIQUE=1 a new one on every
-- request (uncached).
local token = os.getenv("LOAD_TOKEN")
local unique = os.getenv("LOAD_UNIQUE") == "1"
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
  local path = unique and string.format("/ext_authz/documents/d%d", counter) or "/ext_authz/documents/onboarding"
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. token, ["Host"] = "docs.example.com"}, "")
end

done = dofile(os.getenv("LOAD_REPORT") or "scripts/load/report.lua")
