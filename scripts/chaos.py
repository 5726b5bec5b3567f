#!/usr/bin/env python3
"""make chaos: the release server under a steady load of decisions and
writes, every answer checked against an oracle, while stores fail under it.

The load: CHAOS_WRITERS writers move the ownership of CHAOS_DOCS documents
(each its own share) between CHAOS_USERS users (`PATCH /v1/entities`);
CHAOS_READERS readers ask whether a random user
may write a random document (`POST /v1/is_authorized`). The sample policy
`docs.owner-full-access` allows exactly the owner, so the oracle is the
last acknowledged owner of each document. A write that failed or is still
in flight may or may not have applied: until the next acknowledged write,
both owners are possible and a decision on that document proves nothing.

The faults, in order, each on the spare services this script starts (its
own redis-server and PostgreSQL cluster on spare ports, never the
machine's shared ones):

1. switch the active store from SQLite to the spare Redis;
2. SIGKILL Redis, keep it down, start it again (append-only file, fsync
   always: what Redis acknowledged survives);
3. switch to the spare PostgreSQL;
4. stop PostgreSQL (`immediate`: a crash), start it again;
5. freeze the LDAP directory (its own slapd) with SIGSTOP, thaw it with
   SIGCONT;
6. SIGKILL the OIDC provider (its own oidc-provider), start it again;
7. SIGKILL Portcullis mid-write, start it again on the same store.

Beside the document load, directory load runs from the start: decisions for
LDAP users on a policy over an LDAP group (alice and carol are in
`engineering`, carol through a nested group; bob and dave are not),
LDAP sign-ins (alice, bob and carol with their passwords, dave always with
a wrong one: a 200 for dave is a wrong allow), and decisions for the OIDC
provider's `gateway` client by its bearer JWT (allowed), and by that token
with its payload changed (a 2xx is a wrong allow).

The report: decisions made; wrong allows (must be 0); wrong denies by cause
(during an outage and naming an error: fail-closed, expected; anything else
is a bug); 5xx answers, during outages and otherwise; acknowledged writes lost (must be 0: every document
must hold a possible owner, after the restart and at the end); for each
store outage the time until its breaker opened and, after the restart,
until it closed and until the first acknowledged write; for the restart of
Portcullis, the time until it was ready and until the first acknowledged
write; for the directory, the time until its breaker opened, and after the
thaw until it closed and until the first sign-in; for the provider, the
time after its restart until a token it newly issued was accepted. It is printed and written to $CARGO_TARGET_DIR/chaos-report.json.

    CHAOS_OUTAGE_SECONDS   how long each service stays down (default 10)
    CHAOS_STEADY_SECONDS   load between faults (default 5)
    CHAOS_READERS          reader threads (default 2)
    CHAOS_WRITERS          writer threads (default 3)

Needs redis-server and PostgreSQL's server binaries, as the machine has
them, and slapd and the test OIDC provider (`scripts/install-deps.sh test`);
Python 3 standard library only.
"""

import base64
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gauntlet  # noqa: E402  (the HTTP client and server helpers)

OPERATOR = "chaos-operator-token-5b2e8d1f0a"
DOCS = int(os.environ.get("CHAOS_DOCS", "12"))
USERS = int(os.environ.get("CHAOS_USERS", "4"))
OUTAGE = float(os.environ.get("CHAOS_OUTAGE_SECONDS", "10"))
STEADY = float(os.environ.get("CHAOS_STEADY_SECONDS", "5"))
READERS = int(os.environ.get("CHAOS_READERS", "2"))
WRITERS = int(os.environ.get("CHAOS_WRITERS", "3"))
PG_BIN = "/usr/lib/postgresql/{}/bin".format(
    sorted(os.listdir("/usr/lib/postgresql"))[-1] if os.path.isdir("/usr/lib/postgresql") else "15")


def user(k):
    return f'Portcullis::User::"chaos-u{k}"'


def doc_entity(i, owner):
    return {"uid": {"type": "Docs::Document", "id": f"chaos-d{i}"},
            "attrs": {"owner": {"__entity": {"type": "Portcullis::User", "id": f"chaos-u{owner}"}},
                      "classification": "internal", "public": False},
            "parents": []}


def user_entity(k):
    return {"uid": {"type": "Portcullis::User", "id": f"chaos-u{k}"},
            "attrs": {"email": f"u{k}@chaos.example", "active": True}, "parents": []}


class Oracle:
    """What each document's owner may be, and the tallies."""

    def __init__(self):
        self.lock = threading.Lock()
        self.possible = [{0} for _ in range(DOCS)]
        self.stats = {"decisions": 0, "wrong_allows": 0, "wrong_denies_fail_closed": 0,
                      "wrong_denies_bug": 0, "ambiguous_decisions": 0, "unanswered_decisions": 0,
                      "server_errors_during_outages": 0, "server_errors_otherwise": 0, "writes_acknowledged": 0, "writes_failed": 0,
                      "acknowledged_writes_lost": 0,
                      "sign_ins": 0, "sign_ins_refused_fail_closed": 0, "wrong_sign_in_refusals": 0,
                      "wrong_sign_ins": 0, "forged_tokens_refused": 0}
        self.outages = []  # [start, end or None]
        self.examples = []

    def count(self, key, example=None):
        with self.lock:
            self.stats[key] += 1
            if example and len(self.examples) < 20:
                self.examples.append({"what": key, **example})

    def server_error(self, since, status, body):
        """A 5xx: expected while a service is down (503, fail closed)."""
        if self.in_outage(since, time.monotonic()):
            self.count("server_errors_during_outages")
        else:
            self.count("server_errors_otherwise", {"status": status, "body": body})

    def in_outage(self, since, until):
        with self.lock:
            return any(start <= until and (end is None or since <= end + 2)
                       for start, end in self.outages)


class Service:
    """A spare store this script owns: its process, started and stopped."""

    def __init__(self, name, start, stop):
        self.name, self._start, self._stop = name, start, stop

    def start(self):
        self._start()

    def stop(self):
        self._stop()


def spare_redis(root):
    port = gauntlet.free_port()
    data = os.path.join(root, "redis")
    os.makedirs(data)
    state = {}

    def start():
        log = open(os.path.join(root, "redis.log"), "a")
        state["proc"] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", data],
            stdout=log, stderr=log)
        wait_port(port)

    def stop():  # a crash: what was fsynced survives
        state["proc"].send_signal(signal.SIGKILL)
        state["proc"].wait()

    return Service("redis", start, stop), f"redis://127.0.0.1:{port}/"


def spare_postgres(root):
    port = gauntlet.free_port()
    data = os.path.join(root, "pg")
    os.makedirs(data)
    shutil.chown(root, "postgres")
    shutil.chown(data, "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(as_postgres + [f"{PG_BIN}/initdb", "-D", data, "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    log = os.path.join(data, "server.log")

    def start():
        subprocess.run(as_postgres + [f"{PG_BIN}/pg_ctl", "-D", data, "-o", options, "-l", log,
                                      "-w", "start"], check=True, capture_output=True)

    def stop():  # a crash: committed transactions are in the WAL
        subprocess.run(as_postgres + [f"{PG_BIN}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       check=True, capture_output=True)

    return Service("pg", start, stop), f"postgres://postgres@127.0.0.1:{port}/postgres"


def spare_slapd(root):
    """Its own slapd, seeded from backends/ldap/seed.ldif. Its `stop` is a
    freeze (SIGSTOP: connections are accepted and never answered), its
    `start` the thaw."""
    port = gauntlet.free_port()
    out = subprocess.run([os.path.join(gauntlet.ROOT, "backends/ldap/start.sh"), str(port),
                          os.path.join(root, "slapd")], check=True, capture_output=True, text=True)
    pid = int(out.stdout.strip())

    def kill(sig):
        os.kill(pid, sig)

    service = Service("corp", lambda: kill(signal.SIGCONT), lambda: kill(signal.SIGSTOP))
    service.pid = pid
    return service, port


def spare_oidc(root, redirect):
    """Its own oidc-provider (backends/oidc/server.js)."""
    port = gauntlet.free_port()
    state = {}

    def start():
        log = open(os.path.join(root, "oidc.log"), "a")
        state["proc"] = subprocess.Popen(
            ["node", os.path.join(gauntlet.ROOT, "backends/oidc/server.js")],
            env={**os.environ, "OIDC_PORT": str(port), "OIDC_REDIRECT_URIS": redirect},
            stdout=log, stderr=log)
        wait_port(port)

    def stop():
        state["proc"].send_signal(signal.SIGKILL)
        state["proc"].wait()

    return Service("op", start, stop), f"http://127.0.0.1:{port}"


def provider_token(issuer):
    """A JWT access token of the provider's `gateway` client, or None."""
    credentials = base64.b64encode(b"gateway:gateway-test-secret").decode()
    request = urllib.request.Request(
        f"{issuer}/token",
        urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "api"}).encode(),
        {"Authorization": f"Basic {credentials}",
         "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())["access_token"]
    except (OSError, ValueError, KeyError):
        return None


def forged(token):
    """The token with its payload's `sub` changed and the signature kept."""
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "root"
    changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{head}.{changed}.{signature}"


# The directory policies: on an LDAP group, and on the provider's group.
DIRECTORY_POLICIES = """
@id("chaos.ldap-engineering")
permit(principal in Portcullis::Group::"corp:engineering", action == Docs::Action::"write",
       resource == Docs::Document::"chaos-ldap");
@id("chaos.oidc-gateways")
permit(principal in Portcullis::Group::"op:gateways", action == Docs::Action::"read",
       resource == Docs::Document::"chaos-oidc");
"""
LDAP_MEMBERS = {"alice": True, "bob": False, "carol": True, "dave": False}


def directory_config(ldap_port, issuer, redirect):
    return f"""
[backends.corp]
kind = "ldap"
url = "ldap://127.0.0.1:{ldap_port}"
bind_dn = "cn=admin,dc=portcullis,dc=test"
bind_password = "admin-secret"
user_base = "ou=people,dc=portcullis,dc=test"
group_base = "ou=groups,dc=portcullis,dc=test"
timeout_ms = 1000

[backends.op]
kind = "oidc"
issuer = "{issuer}"
client_id = "portcullis"
client_secret = "portcullis-test-secret"
redirect_url = "{redirect}"
scopes = ["openid", "email", "profile", "groups"]

[backends.op.bearer]
audiences = ["portcullis"]
algorithms = ["RS256"]
"""


def wait_port(port, timeout=20):
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def post(api, method, path, body=None, token=None):
    """(status, body); status None when there was no answer."""
    try:
        reply = api.call(method, path, token, body)
        return reply.status, reply.body
    except gauntlet.Failure:
        return None, None
    except Exception:  # a timeout or a reset mid-answer
        return None, None


class Load:
    """The writer and the readers, until stopped."""

    def __init__(self, api, oracle, issuer):
        self.api, self.oracle, self.issuer = api, oracle, issuer
        self.running = threading.Event()
        self.running.set()
        self.acked_at = []  # times of acknowledged writes
        self.signed_in_at = []  # times of LDAP sign-ins that succeeded
        self.token = provider_token(issuer)
        if self.token is None:
            raise RuntimeError(f"no token from the provider at {issuer}")
        self.token_accepted_at = {}  # token -> first time it was accepted
        self.threads = [threading.Thread(target=self.writer, args=(w,), daemon=True)
                        for w in range(WRITERS)] + [
            threading.Thread(target=self.reader, daemon=True) for _ in range(READERS)] + [
            threading.Thread(target=t, daemon=True)
            for t in (self.ldap_reader, self.ldap_sign_in, self.ldap_sign_in, self.bearer_reader)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.running.clear()
        for t in self.threads:
            t.join(timeout=10)

    def writer(self, w):
        """Moves the documents w, w + WRITERS, ...: one writer per document,
        so what may be stored follows from its own writes alone."""
        o = self.oracle
        mine = range(w, DOCS, WRITERS)
        while self.running.is_set():
            i, k = random.choice(mine), random.randrange(USERS)
            with o.lock:
                o.possible[i].add(k)
            since = time.monotonic()
            status, body = post(self.api, "PATCH", "/v1/entities", [doc_entity(i, k)], OPERATOR)
            if status == 200:
                with o.lock:
                    o.possible[i] = {k}
                    o.stats["writes_acknowledged"] += 1
                self.acked_at.append(time.monotonic())
            else:
                o.count("writes_failed")
                if status is not None and status >= 500:
                    o.server_error(since, status, body)
                time.sleep(0.05)
            time.sleep(0.01)

    def reader(self):
        o = self.oracle
        while self.running.is_set():
            i, k = random.randrange(DOCS), random.randrange(USERS)
            with o.lock:
                before = set(o.possible[i])
            since = time.monotonic()
            status, body = post(self.api, "POST", "/v1/is_authorized",
                                {"principal": user(k), "action": 'Docs::Action::"write"',
                                 "resource": f'Docs::Document::"chaos-d{i}"'})
            until = time.monotonic()
            with o.lock:
                after = set(o.possible[i])
            if status is None:
                o.count("unanswered_decisions")
                time.sleep(0.05)
                continue
            if status >= 500:
                o.server_error(since, status, body)
                continue
            o.count("decisions")
            if status != 200 or len(before | after) != 1:
                o.count("ambiguous_decisions")
                continue
            owner = next(iter(before))
            want, got = ("Allow" if owner == k else "Deny"), body.get("decision")
            if got == want:
                continue
            example = {"doc": i, "user": k, "owner": owner, "got": got, "body": body}
            if got == "Allow":
                o.count("wrong_allows", example)
            elif body.get("diagnostics", {}).get("errors") and o.in_outage(since, until):
                o.count("wrong_denies_fail_closed", example)
            else:
                o.count("wrong_denies_bug", example)


    def judge(self, since, status, body, want):
        """One decision whose right answer is `want`, whatever was written."""
        o = self.oracle
        until = time.monotonic()
        if status is None:
            o.count("unanswered_decisions")
            time.sleep(0.05)
            return False
        if status >= 500:
            o.server_error(since, status, body)
            return False
        o.count("decisions")
        got = body.get("decision") if status == 200 and isinstance(body, dict) else None
        if got == want:
            return True
        example = {"want": want, "status": status, "body": body}
        if got == "Allow":
            o.count("wrong_allows", example)
        elif o.in_outage(since, until) and (status != 200 or body.get("error")
                                            or body.get("diagnostics", {}).get("errors")):
            o.count("wrong_denies_fail_closed", example)
        else:
            o.count("wrong_denies_bug", example)
        return False

    def ldap_reader(self):
        while self.running.is_set():
            name = random.choice(list(LDAP_MEMBERS))
            since = time.monotonic()
            status, body = post(self.api, "POST", "/v1/is_authorized",
                                {"principal": f'Portcullis::User::"corp:{name}"',
                                 "action": 'Docs::Action::"write"',
                                 "resource": 'Docs::Document::"chaos-ldap"'})
            self.judge(since, status, body, "Allow" if LDAP_MEMBERS[name] else "Deny")
            time.sleep(0.01)

    def ldap_sign_in(self):
        """alice, bob and carol with their passwords; dave with a wrong one."""
        o = self.oracle
        while self.running.is_set():
            name = random.choice(list(LDAP_MEMBERS))
            password = f"{name}-secret" if name != "dave" else "not-dave-s-password"
            since = time.monotonic()
            status, body = post(self.api, "POST", "/auth/ldap/corp/login",
                                {"username": name, "password": password})
            until = time.monotonic()
            if status is None:
                o.count("unanswered_decisions")
            elif status >= 500 and not (status == 503 and name != "dave"):
                o.server_error(since, status, body)
            elif name == "dave":
                if status == 200:
                    o.count("wrong_sign_ins", {"user": name, "body": body})
            elif status == 200:
                o.count("sign_ins")
                self.signed_in_at.append(until)
            elif status == 503 and o.in_outage(since, until):
                o.count("sign_ins_refused_fail_closed")
            else:
                o.count("wrong_sign_in_refusals", {"user": name, "status": status, "body": body})
            time.sleep(0.1)

    def bearer_reader(self):
        """Decisions for the provider's token, and refusals of a forged one."""
        o = self.oracle
        while self.running.is_set():
            token = self.token
            if random.random() < 0.2:
                since = time.monotonic()
                status, body = post(self.api, "POST", "/v1/is_authorized",
                                    {"action": 'Docs::Action::"read"',
                                     "resource": 'Docs::Document::"chaos-oidc"'}, forged(token))
                if status is not None and 200 <= status < 300:
                    o.count("wrong_allows", {"forged": True, "status": status, "body": body})
                elif status == 401:
                    o.count("forged_tokens_refused")
                elif status is not None and status >= 500:
                    o.server_error(since, status, body)
                continue
            since = time.monotonic()
            status, body = post(self.api, "POST", "/v1/is_authorized",
                                {"action": 'Docs::Action::"read"',
                                 "resource": 'Docs::Document::"chaos-oidc"'}, token)
            if self.judge(since, status, body, "Allow"):
                self.token_accepted_at.setdefault(token, time.monotonic())
            time.sleep(0.01)


def breaker(api, backend):
    """The backend's breaker state from /metrics (0 closed, 1 half-open, 2 open)."""
    status, text = post(api, "GET", "/metrics")
    if status != 200 or not isinstance(text, str):
        return None
    found = re.search(rf'portcullis_backend_breaker_state{{backend="{backend}"}} (\d+)', text)
    return int(found.group(1)) if found else None


def wait_for(predicate, timeout):
    """Seconds until `predicate()` held, or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return round(time.monotonic() - started, 2)
        time.sleep(0.05)
    return None


def first_ack_after(load, moment, timeout=30):
    seconds = wait_for(lambda: any(t > moment for t in list(load.acked_at)), timeout)
    return None if seconds is None else round(min(t for t in load.acked_at if t > moment) - moment, 2)


def verify_writes(api, oracle, when):
    """Every document holds a possible owner: no acknowledged write lost."""
    status, entities = post(api, "GET", "/v1/entities", token=OPERATOR)
    if status != 200:
        raise RuntimeError(f"GET /v1/entities {when}: {status}")
    owners = {}
    for e in entities:
        uid = e.get("uid", {})
        if uid.get("type") == "Docs::Document" and uid.get("id", "").startswith("chaos-d"):
            owner = e["attrs"]["owner"]["__entity"]["id"]
            owners[int(uid["id"][len("chaos-d"):])] = int(owner[len("chaos-u"):])
    lost = 0
    with oracle.lock:
        for i in range(DOCS):
            if owners.get(i) not in oracle.possible[i]:
                lost += 1
                oracle.examples.append({"what": "lost write", "when": when, "doc": i,
                                        "stored": owners.get(i),
                                        "possible": sorted(oracle.possible[i])})
        oracle.stats["acknowledged_writes_lost"] += lost
    print(f"   {when}: every document holds an acknowledged owner: {lost == 0} ({lost} lost)")


def store_outage(api, load, oracle, service, report):
    name = service.name
    print(f"== {name}: crash, {OUTAGE:.0f} s down, start again", flush=True)
    down = time.monotonic()
    with oracle.lock:
        oracle.outages.append([down, None])
    service.stop()
    opened = wait_for(lambda: breaker(api, name) == 2, OUTAGE + 10)
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - down)))
    service.start()
    up = time.monotonic()
    with oracle.lock:
        oracle.outages[-1][1] = up
    closed = wait_for(lambda: breaker(api, name) == 0, 60)
    recovered = first_ack_after(load, up)
    report[name] = {"breaker_open_after_s": opened, "breaker_closed_after_restart_s": closed,
                    "first_acknowledged_write_after_restart_s": recovered}
    print(f"   breaker open after {opened} s; after the restart closed after {closed} s, "
          f"first acknowledged write after {recovered} s", flush=True)


def directory_freeze(api, load, oracle, slapd, report):
    print(f"== LDAP directory: SIGSTOP, {OUTAGE:.0f} s frozen, SIGCONT", flush=True)
    down = time.monotonic()
    with oracle.lock:
        oracle.outages.append([down, None])
    slapd.stop()
    opened = wait_for(lambda: breaker(api, "corp") == 2, OUTAGE + 10)
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - down)))
    slapd.start()
    up = time.monotonic()
    with oracle.lock:
        oracle.outages[-1][1] = up
    closed = wait_for(lambda: breaker(api, "corp") == 0, 60)
    seconds = wait_for(lambda: any(t > up for t in list(load.signed_in_at)), 60)
    signed_in = None if seconds is None else round(
        min(t for t in load.signed_in_at if t > up) - up, 2)
    report["ldap"] = {"breaker_open_after_s": opened, "breaker_closed_after_thaw_s": closed,
                      "first_sign_in_after_thaw_s": signed_in}
    print(f"   breaker open after {opened} s; after the thaw closed after {closed} s, "
          f"first sign-in after {signed_in} s", flush=True)


def provider_outage(api, load, oracle, provider, report):
    print(f"== OIDC provider: SIGKILL, {OUTAGE:.0f} s down, start again", flush=True)
    down = time.monotonic()
    with oracle.lock:
        oracle.outages.append([down, None])
    provider.stop()
    issued = provider_token(load.issuer)  # refused: nothing listens
    time.sleep(OUTAGE)
    provider.start()
    up = time.monotonic()
    with oracle.lock:
        oracle.outages[-1][1] = up
    token = provider_token(load.issuer)
    if token is None:
        raise RuntimeError("the restarted provider issues no token")
    load.token = token
    accepted = wait_for(lambda: token in load.token_accepted_at, 60)
    accepted = None if accepted is None else round(load.token_accepted_at[token] - up, 2)
    report["oidc"] = {"token_issued_during_outage": issued is not None,
                      "new_token_accepted_after_restart_s": accepted}
    print(f"   a token it issued after the restart accepted after {accepted} s", flush=True)


def switch(api, target):
    status, body = post(api, "POST", f"/storage/switch/{target}", token=OPERATOR)
    if status != 200:
        raise RuntimeError(f"switch to {target}: {status} {body}")
    print(f"== switched to {target}: {body.get('from')} -> {body.get('to')}", flush=True)


def main():
    if not os.access(gauntlet.BIN, os.X_OK):
        print(f"chaos: no binary at {gauntlet.BIN} (build it, or set GAUNTLET_BIN)",
              file=sys.stderr)
        return 2
    root = tempfile.mkdtemp(prefix="portcullis-chaos-")
    os.chmod(root, 0o755)  # the spare PostgreSQL runs as postgres
    cwd = os.path.join(root, "server")
    os.makedirs(cwd)
    for name in ("config", "policies"):
        shutil.copytree(os.path.join(gauntlet.ROOT, name), os.path.join(cwd, name))
    redis, redis_url = spare_redis(root)
    pg, pg_url = spare_postgres(os.path.join(root, "pgroot"))
    redis.start()
    pg.start()
    port = gauntlet.free_port()
    redirect = f"http://127.0.0.1:{port}/auth/oauth/op/callback"
    slapd, ldap_port = spare_slapd(root)
    provider, issuer = spare_oidc(root, redirect)
    provider.start()
    with open(os.path.join(cwd, "config", "portcullis.toml"), "a") as config:
        config.write(directory_config(ldap_port, issuer, redirect))
    with open(os.path.join(cwd, "policies", "chaos-directories.cedar"), "w") as policies:
        policies.write(DIRECTORY_POLICIES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS_")}
    env.update({
        "PORTCULLIS_SERVER__LISTEN": f"127.0.0.1:{port}",
        "PORTCULLIS_SERVER__ADMIN_TOKEN": OPERATOR,
        "PORTCULLIS_POLICIES__WATCH": "false",
        "PORTCULLIS_RESILIENCE__BREAKER_COOLDOWN_MS": "1000",
        "PORTCULLIS_BACKENDS__REDIS__KIND": "redis",
        "PORTCULLIS_BACKENDS__REDIS__URL": redis_url,
        "PORTCULLIS_BACKENDS__REDIS__PREFIX": "chaos:",
        "PORTCULLIS_BACKENDS__PG__KIND": "postgres",
        "PORTCULLIS_BACKENDS__PG__URL": pg_url,
        "PORTCULLIS_BACKENDS__PG__SCHEMA": "chaos",
        "PORTCULLIS_BACKENDS__PG__MAX_CONNECTIONS": "4",
        # dave's wrong passwords would otherwise lock out this address.
        "PORTCULLIS_ACCOUNTS__IP_LOCKOUT_THRESHOLD": "100000",
    })
    api = gauntlet.Client(f"http://127.0.0.1:{port}")
    oracle, report = Oracle(), {}
    print(f"chaos: {gauntlet.BIN} on 127.0.0.1:{port} in {root}; spare Redis {redis_url}, "
          f"spare PostgreSQL {pg_url}, "
          f"slapd on {ldap_port}, OIDC provider {issuer}", flush=True)
    server = gauntlet.start_server(cwd, env)
    load = None
    passed = False
    try:
        gauntlet.wait_ready(api, server)
        seed = [user_entity(k) for k in range(USERS)] + [doc_entity(i, 0) for i in range(DOCS)]
        status, body = post(api, "PATCH", "/v1/entities", seed, OPERATOR)
        if status != 200:
            raise RuntimeError(f"seeding: {status} {body}")
        load = Load(api, oracle, issuer)
        load.start()
        time.sleep(STEADY)
        switch(api, "redis")
        time.sleep(STEADY)
        store_outage(api, load, oracle, redis, report)
        time.sleep(STEADY)
        switch(api, "pg")
        time.sleep(STEADY)
        store_outage(api, load, oracle, pg, report)
        time.sleep(STEADY)
        directory_freeze(api, load, oracle, slapd, report)
        time.sleep(STEADY)
        provider_outage(api, load, oracle, provider, report)
        time.sleep(STEADY)

        print("== Portcullis: SIGKILL mid-write, start again", flush=True)
        killed = time.monotonic()
        with oracle.lock:
            oracle.outages.append([killed, None])
        server.send_signal(signal.SIGKILL)
        server.wait()
        # Answers already on their way before the kill may arrive after it:
        # recovery counts from the restart.
        restarted = time.monotonic()
        server = gauntlet.start_server(cwd, env)
        ready = wait_for(lambda: post(api, "GET", "/ready")[0] == 200, 60)
        with oracle.lock:
            oracle.outages[-1][1] = time.monotonic()
        recovered = first_ack_after(load, restarted)
        report["portcullis"] = {"ready_after_restart_s": ready,
                                "first_acknowledged_write_after_restart_s": recovered}
        print(f"   ready {ready} s after the restart, first acknowledged write after {recovered} s",
              flush=True)
        verify_writes(api, oracle, "after the restart")
        time.sleep(STEADY)
        load.stop()
        verify_writes(api, oracle, "at the end")
        passed = True
    except Exception as e:  # reported below with the server's log
        print(f"chaos: the run failed: {e!r}")
    finally:
        if load is not None:
            load.stop()
        gauntlet.stop_server(server)
        for service in (redis, pg, provider):
            try:
                service.stop()
            except Exception:
                pass
        try:
            slapd.start()  # thawed, so that it can stop
            os.kill(slapd.pid, signal.SIGTERM)
        except OSError:
            pass
    stats = oracle.stats
    report.update(stats)
    report["examples"] = oracle.examples
    out = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(gauntlet.ROOT, "target"),
                       "chaos-report.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print("== report")
    for key, value in stats.items():
        print(f"   {key}: {value}")
    panics = gauntlet.server_panics(cwd)
    good = (passed and stats["wrong_allows"] == 0 and stats["wrong_denies_bug"] == 0
            and stats["acknowledged_writes_lost"] == 0 and stats["wrong_sign_ins"] == 0
            and stats["wrong_sign_in_refusals"] == 0 and not panics)
    for line in panics[:10]:
        print(f"   server panic: {line}")
    for example in oracle.examples[:10]:
        print(f"   example: {json.dumps(example)[:400]}")
    print(f"chaos: {'passed' if good else 'FAILED'} (report in {out}; run in {root})")
    if good:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
