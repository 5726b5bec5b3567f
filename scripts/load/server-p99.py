"""The server's own p99 for ext_authz checks between two /metrics snapshots.

    server-p99.py BEFORE AFTER http|grpc

Reads the Prometheus histogram of the HTTP ext_authz route or of the gRPC
Check call, subtracts BEFORE from AFTER, and prints the bucket bound that
holds 99% of the checks in between: time inside the server, from the
request's arrival in the router (HTTP) or service (gRPC) to its answer.
What a client sees on top of it is the network, the scheduling of both
ends and the client's own work.
"""
import re
import sys

SERIES = {
    "http": 'portcullis_http_request_duration_seconds_bucket{method="GET",route="/ext_authz/{*path}",le="',
    "grpc": 'portcullis_ext_authz_grpc_duration_seconds_bucket{le="',
}


def buckets(path, prefix):
    found = {}
    with open(path) as text:
        for line in text:
            if line.startswith(prefix):
                bound, count = re.match(r'.*le="([^"]+)"\} (\S+)', line).groups()
                found[float(bound)] = float(count)
    return found


def main():
    before_path, after_path, kind = sys.argv[1:4]
    before = buckets(before_path, SERIES[kind])
    after = buckets(after_path, SERIES[kind])
    delta = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = delta[-1][1] if delta else 0.0
    if total == 0:
        sys.exit(f"no {kind} ext_authz checks between the two snapshots")
    for bound, count in delta:
        if count >= 0.99 * total:
            print(f"server p99 <= {bound * 1000:g} ms ({int(total)} checks)")
            return


main()
