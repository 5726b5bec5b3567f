-- The same kind of decision, for the caller behind LOAD_API_KEY (no
-- principal in the body): the key is checked on every request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("LOAD_API_KEY")
wrk.body = '{"action":"Docs::Action::\\"read\\"","resource":"Docs::Document::\\"onboarding\\""}'

done = dofile(os.getenv("LOAD_REPORT") or "scripts/load/report.lua")
