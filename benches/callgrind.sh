#!/usr/bin/env bash
# Instruction counts per poll under callgrind (repeatable whatever else the machine does):
# 100 endpoints polled every second for SECS seconds, the simulator in a separate process.
#
#   CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
#       cargo build --release --workspace --target-dir target/prof
#   BIN=target/prof/release/oauth-poller SECS=30 benches/callgrind.sh
# (the simulator is target/prof/release/oauth-poller-sim, or SIM_BIN=PATH)
#   callgrind_annotate --inclusive=yes DIR/callgrind.out | less
set -euo pipefail
BIN=$(realpath "${BIN:-target/prof/release/oauth-poller}")
SIM_BIN=$(realpath "${SIM_BIN:-$(dirname "$BIN")/oauth-poller-sim}")
SECS=${SECS:-30}
PORT=${PORT:-18555}
D=$(mktemp -d)
setsid "$SIM_BIN" --profile inode --listen 127.0.0.1:$PORT --access-ttl 86400 --seed-out "$D/seed.json" >/dev/null 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null || true' EXIT
sleep 1
{
    printf '[daemon]\ndatabase = "%s/state.db"\ninterval = "1s"\n' "$D"
    printf '[[account]]\nname = "a"\nbase_url = "http://127.0.0.1:%s/api/"\nseed_file = "%s/seed.json"\n' $PORT "$D"
    printf '[account.oauth2]\ntoken_url = "oauth/token/"\nclient_id = "demo-client"\nclient_secret = "demo-client-secret"\nclient_auth = "body"\n'
    for i in $(seq 1 100); do
        printf '[[account.endpoint]]\nname = "e%s"\npath = "v1/links/"\nquery = { no_pagination = "", ep = "%s" }\n' "$i" "$i"
    done
} > "$D/config.toml"
valgrind --tool=callgrind --callgrind-out-file="$D/callgrind.out" "$BIN" --config "$D/config.toml" run 2>"$D/daemon.log" &
VG=$!
sleep "$SECS"
kill -TERM $VG; wait $VG || true
POLLS=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from polls').fetchone()[0])" "$D/state.db")
TOTAL=$(grep -E "^(summary|totals):" "$D/callgrind.out" | head -1 | awk '{print $2}')
echo "dir=$D polls=$POLLS instructions=$TOTAL per_poll=$((TOTAL / POLLS)) (start-up included)"
