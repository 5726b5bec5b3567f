#!/usr/bin/env bash
# Installs the test OIDC provider's packages (oidc-provider from the npm
# registry) into backends/oidc/node_modules, as package-lock.json pins them.
# Idempotent: does nothing when they are already there.
set -euo pipefail
cd "$(dirname "$0")"
command -v node > /dev/null || { echo "node is required for the test OIDC provider" >&2; exit 1; }
# The stamp is the lock file the installed packages came from.
if cmp -s package-lock.json node_modules/.installed-lock 2> /dev/null; then
  exit 0
fi
echo "installing the test OIDC provider (npm ci in backends/oidc)"
npm ci --no-audit --no-fund --loglevel=error > /dev/null
cp package-lock.json node_modules/.installed-lock
