#!/usr/bin/env bash
# Regenerates benches/symbol-order.txt: the functions a running daemon executes (start,
# polls with pagination, a stop; then token refreshes and a reload), which release builds
# link first so that they fill as few pages as possible (see build.rs). Names carry the hashes of this
# toolchain and Cargo.lock: rerun after updating either (the idle row of `cargo bench`
# shows whether the list still matches). Needs valgrind and curl; takes about 15 minutes.
#
#   benches/symbol-order.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-24}
PORT=${PORT:-18557}
work=$(mktemp -d)
sim=
cleanup() {
    [ -n "$sim" ] && kill "$sim" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# One record per build of the binary: `cargo build`, `cargo test` and `cargo bench` give our
# own crate different symbol hashes (dependencies share theirs).
record() {
    local bin=$1 dir=$2 ttl=$3
    mkdir -p "$dir"
    setsid "$bin" simulate --listen "127.0.0.1:$PORT" --access-ttl "$ttl" --change-every 5 \
        --seed-out "$dir/seed.json" --config-out "$dir/config.toml" \
        --config-database "$dir/state.db" >"$dir/sim.log" 2>&1 &
    sim=$!
    for _ in $(seq 50); do [ -s "$dir/config.toml" ] && break; sleep 0.1; done
    sed -i -e 's/^interval = .*/interval = "1s"/' \
        -e "s|^seed_file = \"seed.json\"|seed_file = \"$dir/seed.json\"|" "$dir/config.toml"
    # More accounts, seeded with token responses, with queries of two keys: a configuration
    # of several accounts and endpoints runs parsing and store code that a small one does not.
    for a in 2 3 4; do
        curl -sf -d grant_type=password -d username=owner -d password=demo-password \
            -d client_id=demo-client -d client_secret=demo-client-secret -d scope=sync \
            "http://127.0.0.1:$PORT/api/oauth/token/" >"$dir/seed$a.json"
        printf '\n[[account]]\nname = "account%s"\nbase_url = "http://127.0.0.1:%s/api/"\n' $a "$PORT"
        printf 'seed_file = "%s"\n\n[account.oauth2]\ntoken_url = "oauth/token/"\n' "$dir/seed$a.json"
        printf 'client_id = "demo-client"\nclient_secret = "demo-client-secret"\nclient_auth = "body"\n'
        for e in 1 2 3; do
            printf '\n[[account.endpoint]]\nname = "e%s"\npath = "v1/links/"\n' $e
            printf 'query = { no_pagination = "", ep = "%s-%s" }\n' $a $e
        done
    done >>"$dir/config.toml"
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$dir/callgrind.out" \
        "$bin" --config "$dir/config.toml" run 2>"$dir/daemon.log" &
    local vg=$!
    sleep $((SECS / 2))
    [ "$ttl" = 0 ] || kill -HUP $vg
    sleep $((SECS - SECS / 2))
    kill -TERM $vg
    wait $vg || true
    kill "$sim"
    wait "$sim" 2>/dev/null || true
    sim=
    [ "$ttl" = 0 ] || grep -q "token refreshed" "$dir/daemon.log" ||
        echo "warning: no token refresh in $dir/daemon.log" >&2
    # Executed functions, in the order the binary has them.
    sed -nE 's/^c?fn=\([0-9]+\) (.*)$/\1/p' "$dir/callgrind.out" | sort -u >"$dir/executed"
    nm -n "$bin" | awk '$2 ~ /^[tTwW]$/ {print $3}' | awk 'NR==FNR {x[$1]; next} $1 in x' \
        "$dir/executed" - >"$dir/order"
    echo "$bin: $(wc -l <"$dir/order") functions executed"
}

i=0
for variant in "build --release" "test --release --no-run" "bench --bench daemon --no-run"; do
    # shellcheck disable=SC2086
    cargo $variant --locked --quiet
    cp target/release/oauth-poller "$work/bin$i"
    record "$work/bin$i" "$work/steady$i" 0
    record "$work/bin$i" "$work/full$i" 6
    i=$((i + 1))
done
# What every run executes (start, polls, stop) first, then what refreshes and reloads add:
# a daemon that has not refreshed yet keeps only the first part resident.
# `_start` runs once, before callgrind names anything; listed, it does not take a page of its own.
{
    echo _start
    cat "$work"/steady*/order "$work"/full*/order
} | awk '!seen[$0]++' >benches/symbol-order.txt
echo "benches/symbol-order.txt: $(wc -l <benches/symbol-order.txt) symbols"
