#!/usr/bin/env bash
# Installs what the tests (and the load script) need, idempotently: a second
# run installs nothing. Only Debian's, npm's, PyPI's and crates.io's
# registries are reachable, so everything comes from them.
#
#   scripts/install-deps.sh test   # what `make test` needs
#   scripts/install-deps.sh load   # what `make load` needs (wrk)
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
    # The PDP core's tests use only the embedded SQLite store (compiled in).
    # Later backends add slapd, oidc-provider and Chromium here.
    command -v cargo > /dev/null || { echo "cargo is required" >&2; exit 1; }
    ;;
  load)
    apt_install wrk curl
    ;;
  *)
    echo "usage: $0 test|load" >&2
    exit 64
    ;;
esac
