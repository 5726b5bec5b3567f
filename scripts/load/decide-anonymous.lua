-- One decision, no credentials: cedar-agent's way.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"principal":"Portcullis::User::\\"alice\\"","action":"Docs::Action::\\"read\\"","resource":"Docs::Document::\\"onboarding\\""}'

done = dofile(os.getenv("LOAD_REPORT") or "scripts/load/report.lua")
