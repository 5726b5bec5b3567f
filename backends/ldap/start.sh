#!/usr/bin/env bash
# Starts a throwaway slapd on 127.0.0.1:<port> with its data in <dir>,
# seeded from seed.ldif, and prints its pid. The caller stops it (kill).
#
#   backends/ldap/start.sh <port> <dir>
set -euo pipefail
port=$1
dir=$2
here=$(cd "$(dirname "$0")" && pwd)
command -v slapd > /dev/null || PATH=$PATH:/usr/sbin
command -v slapd > /dev/null || { echo "slapd is not installed: run scripts/install-deps.sh test" >&2; exit 1; }

rm -rf "$dir"
mkdir -p "$dir/data"
sed "s|@DIR@|$dir|g" "$here/slapd.conf.in" > "$dir/slapd.conf"
slapd -f "$dir/slapd.conf" -h "ldap://127.0.0.1:$port/" -n "portcullis-slapd-$port" 2> "$dir/slapd.log"
for _ in $(seq 1 100); do
  [ -s "$dir/slapd.pid" ] && (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
  sleep 0.05
done
ldapadd -x -H "ldap://127.0.0.1:$port/" -D "cn=admin,dc=portcullis,dc=test" -w admin-secret \
  -f "$here/seed.ldif" > "$dir/seed.log"
cat "$dir/slapd.pid"
