-- The same decision again and again: the cached path.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"principal":"Portcullis::User::\\"u5\\"","action":"Docs::Action::\\"read\\"","resource":"Docs::Document::\\"d105\\"","context":{"mfa":false}}'

done = dofile(os.getenv("LOAD_REPORT") or "scripts/load/report.lua")
