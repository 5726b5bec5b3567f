#!/usr/bin/env bash
# Installs what the browser tests need, idempotently: Debian's chromium
# (/usr/bin/chromium), the test OIDC provider (backends/oidc), and
# playwright-core from the npm registry, as package-lock.json pins it, with
# install scripts off (playwright-core has none, and nothing may download a
# browser).
set -euo pipefail
cd "$(dirname "$0")"
../../backends/oidc/install.sh
if ! [ -x /usr/bin/chromium ]; then
  echo "installing chromium"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends chromium fonts-dejavu-core > /dev/null \
    || { $sudo apt-get update > /dev/null && $sudo apt-get install -y --no-install-recommends chromium fonts-dejavu-core > /dev/null; }
fi
if cmp -s package-lock.json node_modules/.installed-lock 2> /dev/null; then
  exit 0
fi
echo "installing playwright-core (npm ci in tests/ui)"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error > /dev/null
cp package-lock.json node_modules/.installed-lock
