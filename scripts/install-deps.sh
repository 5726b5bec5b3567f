#!/usr/bin/env bash
# Installs what the tests (and the load script) need, idempotently: a second
# run installs nothing. Only Debian's, npm's, PyPI's and crates.io's
# registries are reachable, so everything comes from them.
#
#   scripts/install-deps.sh test   # what `make test` needs: slapd, the
#                                  # test OIDC provider (Node), Chromium and
#                                  # playwright-core for the browser tests,
#                                  # and checks that PostgreSQL and Redis answer
#   scripts/install-deps.sh load   # what `make load` needs (wrk)
#   scripts/install-deps.sh api-fuzz  # Schemathesis, in a virtualenv under
#                                  # the cargo target directory
#   scripts/install-deps.sh soak   # matplotlib, in the same virtualenv
set -euo pipefail

want=${1:-test}

apt_install() { # packages...
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "${missing[@]}" > /dev/null \
    || { $sudo apt-get update > /dev/null && $sudo apt-get install -y --no-install-recommends "${missing[@]}" > /dev/null; }
}

case "$want" in
  test)
    command -v cargo > /dev/null || { echo "cargo is required" >&2; exit 1; }
    # OpenLDAP: tests start their own slapd on a spare port (backends/ldap/start.sh).
    apt_install slapd ldap-utils
    # The OIDC provider tests sign in against: oidc-provider on Node.
    command -v node > /dev/null && command -v npm > /dev/null || apt_install nodejs npm
    backends/oidc/install.sh
    # The browser tests: Debian's chromium and playwright-core.
    tests/ui/install.sh
    # The machine's own PostgreSQL and Redis: tests use their own schema and
    # key prefix on them. Say clearly when one is not there.
    for service in "PostgreSQL 127.0.0.1 5432" "Redis 127.0.0.1 6379"; do
      set -- $service
      if ! (exec 3<>"/dev/tcp/$2/$3") 2> /dev/null; then
        echo "$1 is not answering on $2:$3; the tests need it running" >&2
        exit 1
      fi
    done
    ;;
  load)
    apt_install wrk curl
    ;;
  api-fuzz|soak)
    # Python tools in one virtualenv under the cargo target directory:
    # Schemathesis for api-fuzz, matplotlib for soak's plot.
    venv=${PY_VENV:-${CARGO_TARGET_DIR:-target}/py-venv}
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    want_pkg=$([ "$want" = api-fuzz ] && echo schemathesis==4.32.5 || echo matplotlib==3.11.2)
    if ! "$venv/bin/pip" show "${want_pkg%%==*}" 2> /dev/null | grep "^Version: ${want_pkg##*==}$" > /dev/null; then
      echo "installing $want_pkg into $venv"
      "$venv/bin/pip" install --quiet --disable-pip-version-check "$want_pkg"
    fi
    ;;
  *)
    echo "usage: $0 test|load|api-fuzz|soak" >&2
    exit 64
    ;;
esac
