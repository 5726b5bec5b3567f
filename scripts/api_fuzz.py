#!/usr/bin/env python3
"""API fuzzing from the spec: Schemathesis against /openapi.json of the
release binary, every route and method, three times: without credentials,
as a signed-in user, and as the operator (admin). The bar:

- no 5xx (`not_a_server_error`);
- every answer within its own schema, status codes and content types
  (`response_schema_conformance`, `status_code_conformance`,
  `content_type_conformance`);
- no panic in the server's log.

The server runs as the gauntlet runs it (scripts/gauntlet.py): default
config, in a temporary directory, on a free port, with a Postgres backend of
its own to switch to. Schemathesis is installed into a virtualenv under the
cargo target directory by scripts/install-deps.sh api-fuzz.

    API_FUZZ_EXAMPLES  examples per operation and identity (default 25)
    API_FUZZ_SECONDS   time budget per identity (default: none)
    API_FUZZ_SEED      Hypothesis seed (default 1: runs are repeatable)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gauntlet  # noqa: E402  (the server helpers)

VENV = os.environ.get("PY_VENV") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR") or os.path.join(gauntlet.ROOT, "target"), "py-venv")
ST = os.path.join(VENV, "bin", "st")
OPERATOR = "api-fuzz-operator-token-7d1f2a9c4e"
USER = ("fuzzer@example.com", "correct horse battery staple 9")
CHECKS = ",".join([
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
])


def schemathesis(base, who, header, report_dir, exclude=None):
    command = [
        ST, "run", f"{base}/openapi.json",
        "--checks", CHECKS,
        "--max-examples", os.environ.get("API_FUZZ_EXAMPLES", "25"),
        "--seed", os.environ.get("API_FUZZ_SEED", "1"),
        "--workers", "1",
        "--request-timeout", "30",
        "--generation-database", "none",
        "--continue-on-failure",
        "--no-color",
        "--report", "junit",
        "--report-junit-path", os.path.join(report_dir, f"{who}.xml"),
    ]
    if os.environ.get("API_FUZZ_SECONDS"):
        command += ["--max-time", os.environ["API_FUZZ_SECONDS"]]
    if header:
        command += ["--header", header]
    if exclude:
        command += ["--exclude-path-regex", exclude]
    print(f"== schemathesis as {who}", flush=True)
    started = time.monotonic()
    # In the run's directory: Schemathesis keeps its state where it runs.
    done = subprocess.run(command, cwd=report_dir)
    print(f"== {who}: exit {done.returncode} in {time.monotonic() - started:.0f} s", flush=True)
    return done.returncode == 0


def main():
    if not os.access(gauntlet.BIN, os.X_OK):
        print(f"api-fuzz: no binary at {gauntlet.BIN} (build it, or set GAUNTLET_BIN)",
              file=sys.stderr)
        return 2
    if not os.access(ST, os.X_OK):
        print(f"api-fuzz: no schemathesis at {ST} (scripts/install-deps.sh api-fuzz)",
              file=sys.stderr)
        return 2
    cwd = tempfile.mkdtemp(prefix="portcullis-api-fuzz-")
    for name in ("config", "policies"):
        shutil.copytree(os.path.join(gauntlet.ROOT, name), os.path.join(cwd, name))
    port = gauntlet.free_port()
    env = gauntlet.server_env(port)
    env["PORTCULLIS_SERVER__ADMIN_TOKEN"] = OPERATOR
    base = f"http://127.0.0.1:{port}"
    api = gauntlet.Client(base)
    print(f"api-fuzz: {gauntlet.BIN} on 127.0.0.1:{port} in {cwd}", flush=True)
    server = gauntlet.start_server(cwd, env)
    passed = False
    try:
        gauntlet.wait_ready(api, server)
        gauntlet.register(api, USER)
        session = gauntlet.login(api, USER)["access_token"]
        # The user fuzzes with an API key of all the user's scopes. A
        # session token would end at the first generated logout, and the
        # stateful phase finds the key's id in GET /auth/api-keys/ and
        # revokes it: every operation after that would only see 401s. So
        # the one route that revokes a key is left out of the user's run
        # (the operator's run has it, for other users' keys).
        reply = api.call("POST", "/auth/api-keys/", session,
                         {"name": "api-fuzz", "current_password": USER[1]})
        key = reply.expect(201)["api_key"]
        results = [
            schemathesis(base, "anonymous", None, cwd),
            schemathesis(base, "user", f"X-API-Key: {key}", cwd,
                         exclude=r"^/auth/api-keys/\{key_id\}$"),
            schemathesis(base, "operator", f"Authorization: Bearer {OPERATOR}", cwd),
        ]
        passed = all(results)
    except gauntlet.Failure as e:
        print(f"api-fuzz: setup failed: {e.reply.request} -> {e.reply.status} {e.reply.body}")
    finally:
        gauntlet.stop_server(server)
        gauntlet.drop_schema()
    panics = gauntlet.server_panics(cwd)
    for line in panics[:20]:
        print(f"api-fuzz: server panic: {line}")
    if panics:
        passed = False
    print(f"api-fuzz: {'passed' if passed else 'FAILED'} (reports and server log in {cwd})")
    if passed:
        shutil.rmtree(cwd, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
