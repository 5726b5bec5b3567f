#!/usr/bin/env bash
# Vendors htmx into the binary's static assets: src/api/web/static/ gets
# htmx.org's dist/htmx.min.js (pinned, checked against its SHA-256) and its
# licence. The web UI serves it from /static/; no page loads anything from
# elsewhere.
#
#   scripts/vendor-htmx.sh
set -euo pipefail
cd "$(dirname "$0")/.."
version=2.0.11
sha256=d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "htmx.org@$version" > /dev/null && tar xzf "htmx.org-$version.tgz")
echo "$sha256  $work/package/dist/htmx.min.js" | sha256sum -c --quiet
cp "$work/package/dist/htmx.min.js" "src/api/web/static/htmx-$version.min.js"
cp "$work/package/LICENSE" src/api/web/static/htmx-LICENSE
echo "htmx $version vendored"
