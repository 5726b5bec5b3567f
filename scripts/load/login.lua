-- Password logins (Argon2id at OWASP parameters), as LOAD_USER / LOAD_PASSWORD.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"username":"%s","password":"%s"}', os.getenv("LOAD_USER"), os.getenv("LOAD_PASSWORD"))

done = dofile(os.getenv("LOAD_REPORT") or "scripts/load/report.lua")
