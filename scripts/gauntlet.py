#!/usr/bin/env python3
"""The gauntlet: the release binary on its default config, driven end to end
over HTTP as a client would drive it.

1. bootstrap an admin with the CLI, log in, refresh the token;
2. a user's life: register, profile, disable (its token stops working), delete;
3. RBAC: role, grant, assignment -> Allow; revocation -> Deny;
4. back up, delete data, restore, and find the data back;
5. switch the store to Postgres, decide there, switch back, decide again.

It runs in a temporary directory holding copies of config/ and policies/, on
a free port, with a Postgres schema of its own (dropped at the end), so it
never touches the repo's var/ or port 8180. Settings differ from
config/portcullis.toml only through PORTCULLIS_* variables. One line per
step; the first wrong answer stops the run with the request, the answer and
what was expected, then the server's log (exit 1).

    GAUNTLET_BIN   the binary (default ${CARGO_TARGET_DIR:-target}/release/portcullis)
    GAUNTLET_PG_URL  the Postgres to switch to (default postgres://postgres@127.0.0.1:5432/test)

Python 3 standard library only.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import types
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("GAUNTLET_BIN") or os.path.join(
    ROOT, os.environ.get("CARGO_TARGET_DIR") or "target", "release", "portcullis")
PG_URL = os.environ.get("GAUNTLET_PG_URL", "postgres://postgres@127.0.0.1:5432/test")
SCHEMA = f"gauntlet_{os.getpid()}_{int(time.time())}"

# (e-mail, password); a password must not contain the address's name.
ADMIN = ("root@gauntlet.example", "gauntlet admin passphrase 7")
CAROL = ("carol@gauntlet.example", "seven lanterns over the bay")
DAVE = ("dave@gauntlet.example", "plans are written in pencil")
WRITE = 'Docs::Action::"write"'
PLAN = 'Docs::Document::"gauntlet-plan"'
# Owned by nobody, not public, not secret: only an RBAC grant lets dave write it.
PLAN_ENTITY = {
    "uid": {"type": "Docs::Document", "id": "gauntlet-plan"},
    "attrs": {
        "owner": {"__entity": {"type": "Portcullis::User", "id": "nobody"}},
        "classification": "internal",
        "public": False,
    },
    "parents": [],
}
GRANT = {"role": "writer", "object": PLAN, "action": WRITE}


class Failure(Exception):
    """A wrong answer: the request, what came back, what was expected."""

    def __init__(self, reply, expected):
        super().__init__(expected)
        self.reply, self.expected = reply, expected


class Reply:
    """One answer, with the request it answers; its checks raise `Failure`."""

    def __init__(self, request, status, body):
        self.request, self.status, self.body = request, status, body

    def fail(self, expected):
        raise Failure(self, expected)

    def expect(self, status):
        """The body, when the status is `status`."""
        if self.status != status:
            self.fail(f"status {status}")
        return self.body

    def expect_error(self, status, code):
        body = self.expect(status)
        self.same("error.code", (body or {}).get("error", {}).get("code"), code)

    def same(self, what, got, want):
        if got != want:
            self.fail(f"{what} == {want!r}, got {got!r}")


class Client:
    """JSON over HTTP: call(method, path, token, body) -> Reply."""

    def __init__(self, base):
        self.base = base

    def call(self, method, path, token=None, body=None, form=None):
        headers, data = {}, None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        shown = f"{method} {path}" + (f" {data.decode()}" if data else "")
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except OSError as e:
            raise Failure(Reply(shown, None, str(e)), "an answer") from e
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Reply(shown, status, parsed)


class Run:
    """Numbers, times and prints the steps; the first failure stops the run."""

    def __init__(self):
        self.section, self.number, self.count = 0, 0, 0
        self.started = time.monotonic()

    def begin(self, title):
        self.section, self.number = self.section + 1, 0
        print(f"== {self.section}. {title}", flush=True)

    def step(self, name, check):
        self.number += 1
        label = f"{self.section}.{self.number} {name}"
        started = time.monotonic()
        try:
            check()
        except Exception as e:
            print(f"[FAIL] {label}  ({ms(started)} ms)")
            if isinstance(e, Failure):
                print(f"       request:  {e.reply.request}")
                print(f"       status:   {e.reply.status}")
                print(f"       body:     {json.dumps(e.reply.body)[:2000]}")
                print(f"       expected: {e.expected}", flush=True)
            else:  # an answer of an unexpected shape, a timeout
                print(f"       error:    {e!r}", flush=True)
            raise
        self.count += 1
        print(f"[ok]   {label}  ({ms(started)} ms)", flush=True)


def ms(since):
    return round((time.monotonic() - since) * 1000)


# The server process.

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(port):
    """This environment without its PORTCULLIS_* variables (the server reads
    each one as a config key, and runs on its default config), plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS_")}
    env.update({
        "PORTCULLIS_SERVER__LISTEN": f"127.0.0.1:{port}",
        "PORTCULLIS_SERVER__PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PORTCULLIS_BACKENDS__PG__KIND": "postgres",
        "PORTCULLIS_BACKENDS__PG__URL": PG_URL,
        "PORTCULLIS_BACKENDS__PG__SCHEMA": SCHEMA,
        "PORTCULLIS_BACKENDS__PG__MAX_CONNECTIONS": "4",
    })
    return env


def start_server(cwd, env):
    with open(os.path.join(cwd, "server.stderr.log"), "a") as log:  # a restart keeps the log
        return subprocess.Popen([BIN, "serve"], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log)


def wait_ready(api, server, timeout=60):
    """Polls GET /health until it answers 200 on the default store."""
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise Failure(Reply("portcullis serve", server.returncode, "exited"), "a server")
        try:
            reply = api.call("GET", "/health")
        except Failure as refused:
            reply = refused.reply
        if reply.status == 200:
            return reply.same("store.backend", reply.body["store"].get("backend"), "default")
        if time.monotonic() > deadline:
            reply.fail(f"200 within {timeout} s")
        time.sleep(0.1)


def stop_server(server):
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def server_panics(cwd):
    """The lines of the server's log in `cwd` that report a panic."""
    with open(os.path.join(cwd, "server.stderr.log"), errors="replace") as log:
        return [line for line in log.read().splitlines() if "panicked" in line]


def drop_schema():
    if not shutil.which("psql"):
        print(f"note: no psql; Postgres schema {SCHEMA} is left behind")
        return
    drop = f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'
    done = subprocess.run(["psql", PG_URL, "-q", "-c", drop], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"note: Postgres schema {SCHEMA} not dropped: {done.stderr.strip()}")


# What several sections do.

def register(api, who):
    reply = api.call("POST", "/auth/register", body={"email": who[0], "password": who[1]})
    user = reply.expect(201)
    reply.same("email", user.get("email"), who[0])
    reply.same("is_superuser", user.get("is_superuser"), False)
    return user["id"]


def login(api, who):
    """Tokens, from the OAuth2 password form."""
    reply = api.call("POST", "/auth/jwt/login", form={"username": who[0], "password": who[1]})
    tokens = reply.expect(200)
    reply.same("token_type", tokens.get("token_type"), "bearer")
    return tokens


def access(api, s, want, plan_stored=True):
    """Dave asks to write the plan as himself, and RBAC's check asks for him:
    both must answer `want`, an Allow naming the grant's policy. Without the
    plan's entity the owner policies cannot evaluate: errors, and a Deny."""
    reply = api.call("POST", "/v1/is_authorized", s.dave, {"action": WRITE, "resource": PLAN})
    body = reply.expect(200)
    reply.same("decision", body.get("decision"), want)
    if plan_stored:
        reply.same("diagnostics.errors", body["diagnostics"].get("errors"), [])
    if want == "Allow":
        reply.same("diagnostics.reason", body["diagnostics"].get("reason"), [s.grant_policy])
    check = {"subject": s.dave_id, "object": PLAN, "action": WRITE}
    reply = api.call("POST", "/rbac/check", body=check)
    reply.same("decision", reply.expect(200).get("decision"), want)


def assign(api, s):
    reply = api.call("POST", f"/rbac/users/{s.dave_id}/roles", s.admin, {"role": "writer"})
    reply.same("roles", reply.expect(201).get("roles"), ["writer"])


def unassign(api, s):
    reply = api.call("DELETE", f"/rbac/users/{s.dave_id}/roles", s.admin, {"role": "writer"})
    reply.same("roles", reply.expect(200).get("roles"), [])


# The five sections.

def bootstrap(run, api, s, cwd, env):
    def create_admin():
        command = [BIN, "user", "create", "--email", ADMIN[0], "--name", "Root", "--admin"]
        done = subprocess.run(command, input=ADMIN[1] + "\n", cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=120)
        found = re.search(r"created admin user (\S+) <(\S+)>", done.stdout)
        if done.returncode != 0 or not found or found.group(2) != ADMIN[0]:
            raise Failure(Reply(" ".join(command[1:]), done.returncode, done.stdout + done.stderr),
                          f"exit 0, 'created admin user <id> <{ADMIN[0]}>'")
        s.admin_id = found.group(1)

    def admin_login():
        s.admin_tokens = login(api, ADMIN)
        reply = api.call("GET", "/users/me", s.admin_tokens["access_token"])
        me = reply.expect(200)
        reply.same("[id, is_superuser]", [me.get("id"), me.get("is_superuser")], [s.admin_id, True])

    def refresh():
        spent = s.admin_tokens["refresh_token"]
        reply = api.call("POST", "/auth/jwt/refresh", body={"refresh_token": spent})
        fresh = reply.expect(200)
        if fresh.get("refresh_token") in (None, spent):
            reply.fail("a new refresh token")
        s.admin = fresh["access_token"]

    run.step("portcullis user create --admin (CLI, before serving) -> exit 0", create_admin)
    s.server = start_server(cwd, env)
    run.step("GET /health -> 200 on the default sqlite store", lambda: wait_ready(api, s.server))
    run.step("admin logs in (JWT) -> 200, /users/me is the superuser", admin_login)
    run.step("refresh the token -> 200, a new pair", refresh)
    run.step("the refreshed token opens an admin route -> 200",
             lambda: api.call("GET", "/storage/backends", s.admin).expect(200))


def user_lifecycle(run, api, s):
    def create():
        s.carol_id = register(api, CAROL)
        s.carol = login(api, CAROL)["access_token"]

    def profile():
        reply = api.call("PATCH", "/users/me", s.carol, {"name": "Carol G."})
        reply.same("name", reply.expect(200).get("name"), "Carol G.")
        reply = api.call("GET", f"/users/{s.carol_id}", s.admin)
        reply.same("name as the admin reads it", reply.expect(200).get("name"), "Carol G.")

    def disable():
        reply = api.call("PATCH", f"/users/{s.carol_id}", s.admin, {"is_active": False})
        reply.same("is_active", reply.expect(200).get("is_active"), False)

    run.step("register carol, she logs in -> 201, 200", create)
    run.step("carol renames herself -> 200, the admin reads the new name", profile)
    run.step("carol on an admin route -> 403 FORBIDDEN",
             lambda: api.call("GET", "/users", s.carol).expect_error(403, "FORBIDDEN"))
    run.step("admin disables carol -> 200, is_active false", disable)
    run.step("carol's token -> 401 UNAUTHENTICATED",
             lambda: api.call("GET", "/users/me", s.carol).expect_error(401, "UNAUTHENTICATED"))
    run.step("carol logs in -> 400 LOGIN_BAD_CREDENTIALS", lambda: api.call(
        "POST", "/auth/jwt/login", form={"username": CAROL[0], "password": CAROL[1]}
    ).expect_error(400, "LOGIN_BAD_CREDENTIALS"))
    run.step("admin deletes carol -> 204",
             lambda: api.call("DELETE", f"/users/{s.carol_id}", s.admin).expect(204))
    run.step("carol is gone -> 404 USER_NOT_FOUND", lambda: api.call(
        "GET", f"/users/{s.carol_id}", s.admin).expect_error(404, "USER_NOT_FOUND"))


def rbac(run, api, s):
    def setup():
        s.dave_id = register(api, DAVE)
        s.dave = login(api, DAVE)["access_token"]
        reply = api.call("PATCH", "/v1/entities", s.admin, [PLAN_ENTITY])
        reply.same("upserted", reply.expect(200).get("upserted"), 1)

    def grant():
        s.grant_policy = api.call("POST", "/rbac/policies", s.admin, GRANT).expect(201)["policy_id"]

    run.step("register dave, store the document gauntlet-plan -> 201, 200", setup)
    run.step("create role writer -> 201", lambda: api.call(
        "PUT", "/rbac/roles/writer", s.admin, {"description": "writes the plan"}).expect(201))
    run.step("grant writer write on gauntlet-plan -> 201", grant)
    run.step("dave writes the plan without the role -> Deny", lambda: access(api, s, "Deny"))
    run.step("assign writer to dave -> 201", lambda: assign(api, s))
    run.step("dave writes the plan -> Allow, by the grant", lambda: access(api, s, "Allow"))
    run.step("revoke writer from dave -> 200", lambda: unassign(api, s))
    run.step("dave writes the plan -> Deny", lambda: access(api, s, "Deny"))


def stored_plan(api, s):
    reply = api.call("GET", "/v1/entities", s.admin)
    found = [e for e in reply.expect(200) if e.get("uid") == PLAN_ENTITY["uid"]]
    return reply, (found[0] if found else None)


def backup_restore(run, api, s):
    def backup():
        reply = api.call("POST", "/iam/recovery/backup", s.admin, {"label": "gauntlet"})
        manifest = reply.expect(201)
        counts = manifest.get("namespaces", {})
        if counts.get("entities", 0) < 1 or counts.get("rbac", 0) < 1:
            reply.fail("namespaces with entities >= 1 and rbac >= 1")
        s.backup_id = manifest["id"]

    def gone():
        reply, plan = stored_plan(api, s)
        reply.same("gauntlet-plan in GET /v1/entities", plan, None)
        api.call("GET", "/rbac/roles/writer", s.admin).expect_error(404, "ROLE_NOT_FOUND")
        access(api, s, "Deny", plan_stored=False)

    def restore():
        path = f"/iam/recovery/restore/{s.backup_id}"
        reply = api.call("POST", path, s.admin, {"confirm": True})
        reply.same("restored.id", reply.expect(200).get("restored", {}).get("id"), s.backup_id)

    def back():
        reply, plan = stored_plan(api, s)
        reply.same("gauntlet-plan in GET /v1/entities", plan, PLAN_ENTITY)
        reply = api.call("GET", "/rbac/roles/writer", s.admin)
        reply.same("description", reply.expect(200).get("description"), "writes the plan")
        access(api, s, "Allow")

    run.step("assign writer to dave again -> Allow",
             lambda: (assign(api, s), access(api, s, "Allow")))
    run.step("POST /iam/recovery/backup -> 201, with entities and rbac", backup)
    run.step("delete gauntlet-plan -> 204",
             lambda: api.call("DELETE", "/v1/entities/Docs::Document/gauntlet-plan", s.admin).expect(204))
    run.step("delete role writer, its grant and assignment -> 200",
             lambda: api.call("DELETE", "/rbac/roles/writer?cascade=true", s.admin).expect(200))
    run.step("the data is gone: no entity, 404 ROLE_NOT_FOUND, Deny", gone)
    run.step("POST /iam/recovery/restore/{id} -> 200", restore)
    run.step("the data is back: the same entity, role writer, Allow", back)


def active_store(api, name, kind):
    reply = api.call("GET", "/health")
    store = reply.expect(200).get("store", {})
    got = [store.get("backend"), store.get("kind"), store.get("status")]
    reply.same("store [backend, kind, status]", got, [name, kind, "up"])


def switch(api, s, source, target):
    reply = api.call("POST", f"/storage/switch/{target}", s.admin)
    report = reply.expect(200)
    reply.same("[from, to]", [report.get("from"), report.get("to")], [source, target])
    if not report.get("namespaces", {}).get("rbac"):
        reply.fail("namespaces.rbac > 0 keys copied")


def store_switch(run, api, s):
    def standby():
        reply = api.call("GET", "/storage/backends", s.admin)
        roles = {b.get("name"): [b.get("kind"), b.get("role")] for b in reply.expect(200)}
        reply.same("[pg, default]: [kind, role]", [roles.get("pg"), roles.get("default")],
                   [["postgres", "standby"], ["sqlite", "active"]])

    run.step("GET /storage/backends -> pg on standby", standby)
    run.step("POST /storage/switch/pg -> 200, default -> pg",
             lambda: switch(api, s, "default", "pg"))
    run.step("GET /health -> active store pg (postgres)",
             lambda: active_store(api, "pg", "postgres"))
    run.step("on pg: dave writes the plan -> Allow", lambda: access(api, s, "Allow"))
    run.step("on pg: revoke writer from dave -> Deny",
             lambda: (unassign(api, s), access(api, s, "Deny")))
    run.step("POST /storage/switch/default -> 200, pg -> default",
             lambda: switch(api, s, "pg", "default"))
    run.step("GET /health -> active store default (sqlite)",
             lambda: active_store(api, "default", "sqlite"))
    run.step("on sqlite: the revocation made on pg is there -> Deny",
             lambda: access(api, s, "Deny"))
    run.step("on sqlite: assign writer again -> Allow",
             lambda: (assign(api, s), access(api, s, "Allow")))


def main():
    if not os.access(BIN, os.X_OK):
        print(f"gauntlet: no binary at {BIN} (build it, or set GAUNTLET_BIN)", file=sys.stderr)
        return 2
    cwd = tempfile.mkdtemp(prefix="portcullis-gauntlet-")
    for name in ("config", "policies"):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(cwd, name))
    port = free_port()
    env = server_env(port)
    api, run, s = Client(f"http://127.0.0.1:{port}"), Run(), types.SimpleNamespace(server=None)
    print(f"gauntlet: {BIN} on 127.0.0.1:{port} in {cwd}, Postgres schema {SCHEMA}")
    passed = False
    try:
        run.begin("Bootstrap: CLI admin, login, refresh")
        bootstrap(run, api, s, cwd, env)
        run.begin("A user's life: create, profile, disable, delete")
        user_lifecycle(run, api, s)
        run.begin("RBAC: role, grant, assignment, revocation")
        rbac(run, api, s)
        run.begin("Backup, delete, restore")
        backup_restore(run, api, s)
        run.begin("Store switch: sqlite -> postgres -> sqlite")
        store_switch(run, api, s)
        passed = True
    except Exception:  # reported by its step
        pass
    finally:
        if s.server is not None:
            stop_server(s.server)
        drop_schema()
    seconds = time.monotonic() - run.started
    if passed:
        shutil.rmtree(cwd, ignore_errors=True)
        print(f"gauntlet passed: {run.count} steps in {seconds:.1f} s")
        return 0
    if s.server is not None:
        with open(os.path.join(cwd, "server.stderr.log"), errors="replace") as log:
            print(f"--- the server's stderr, last 50 lines ({log.name}):")
            sys.stdout.writelines(log.readlines()[-50:])
    print(f"gauntlet FAILED after {run.count} steps passed, in {seconds:.1f} s (kept {cwd})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
