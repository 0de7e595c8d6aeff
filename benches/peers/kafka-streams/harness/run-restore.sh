#!/usr/bin/env bash
# Measures the Kafka Streams peer's state restore: one run processes a data set and is stopped with
# SIGTERM, its state directory is deleted, and a second run with the same APPLICATION_ID (and the
# same INSTANCE_ID) and an empty STATE_DIR restores the window store from its changelog.
#
#   harness/run-restore.sh <guarantee> <meters> <hours> <interval-min> <partitions>
#
# Environment: BOOTSTRAP (default: the address in <repo>/.weir-kafka/bootstrap), JAVA_OPTS (JVM flags
# for the peer, default "-Xmx512m"), THREADS, COMMIT_INTERVAL_MS (passed through), INSTANCE_ID
# (default ks-restore; "none" runs both peers with dynamic membership, whose restart then waits for
# the session timeout), KEEP_TOPICS=1 to leave the topics and the consumer group behind.
# Prints the changelog's size (end - earliest offsets), the restart's launch -> RUNNING time, each
# "restored" line of the restart and their sum. Exits non-zero when a peer failed, did not exit 0 on
# SIGTERM, restored nothing, or the output did not verify.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$here/../../.." && pwd)"
jar="$here/target/weir-peer-kafka-streams.jar"
guarantee="$1" meters="$2" hours="$3" interval="$4" partitions="$5"
export BOOTSTRAP="${BOOTSTRAP:-$(cat "$repo/.weir-kafka/bootstrap")}"
java_opts="${JAVA_OPTS:--Xmx512m}"
instance="${INSTANCE_ID:-ks-restore}"
[[ "$instance" == none ]] && instance=""

run="ks-restore-dev-$(date +%s)-$RANDOM"
input="$run-in" output="$run-out" app="$run-app"
changelog="$app-hourly-agg-changelog"
work="$(mktemp -d /tmp/ks-restore-run.XXXXXX)"
classes="$here/target/harness-classes"
mkdir -p "$classes"
javac -nowarn -d "$classes" -cp "$jar" "$here/harness/PeerCheck.java"
check() { java -cp "$classes:$jar" PeerCheck "$@"; }
pid="" watcher=""
cleanup() {
  for p in $pid $watcher; do kill "$p" 2>/dev/null || true; done
  if [[ "${KEEP_TOPICS:-0}" != 1 ]]; then
    check delete "$input" "$output" "$changelog" >/dev/null 2>&1 || true
    # With INSTANCE_ID=none the group only empties after the session timeout, so this deletion is
    # best effort; with static members it succeeds right away.
    check delete "group:$app" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }

# start_peer <name>: launches the peer with stdout/stderr in $work/<name>.out/.err and state in
# $work/<name>-state; sets pid and launch_ms.
start_peer() {
  launch_ms="$(now_ms)"
  # shellcheck disable=SC2086
  INPUT_TOPIC="$input" OUTPUT_TOPIC="$output" APPLICATION_ID="$app" GUARANTEE="$guarantee" \
    INSTANCE_ID="$instance" STATE_DIR="$work/$1-state" \
    java $java_opts -jar "$jar" >"$work/$1.out" 2>"$work/$1.err" &
  pid=$!
}
# wait_running <name>: sets running_ms, or fails.
wait_running() {
  running_ms=""
  for _ in $(seq 1 2400); do
    if grep -q "kafka-streams peer: RUNNING" "$work/$1.out" 2>/dev/null; then running_ms="$(now_ms)"; return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.05
  done
  echo "$1: peer never reached RUNNING"; cat "$work/$1.err"; exit 1
}
# stop_peer: SIGTERM, sets rc and stop_ms.
stop_peer() {
  kill -TERM "$pid"
  local t0; t0="$(now_ms)"
  set +e; wait "$pid"; rc=$?; set -e
  pid=""
  stop_ms=$(( $(now_ms) - t0 ))
}

check create "$input" "$partitions" >/dev/null
check create "$output" "$partitions" >/dev/null
# Event time is placed just behind the broker's clock. The changelog records carry event time as
# their timestamp, and the changelog is a compact,delete topic whose retention is the window
# retention plus one day, so readings from long ago would be deleted before the restart could
# restore them; a timestamp more than log.message.timestamp.after.max.ms (1 h by default) in the
# future is rejected by the broker, which fails the peer. So the readings end two hours ago and the
# sentinels (2 h after the last reading, enough to close every window) are not in the future.
hour=3600000
BASE_TS_MS=$(( $(now_ms) / hour * hour - (hours + 2) * hour )) SENTINEL_GAP_MS=$(( 2 * hour )) \
  check produce "$input" "$meters" "$hours" "$interval" 42 0

# 1. First run: process everything, then stop cleanly.
start_peer first
wait_running first
echo "first run: launch -> RUNNING $(( running_ms - launch_ms )) ms"
check wait-group "$app" "$input" 900 >/dev/null &
watcher=$!
while kill -0 "$watcher" 2>/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null; then
    kill "$watcher" 2>/dev/null || true
    echo "first run: peer exited before it caught up"; tail -20 "$work/first.err"; exit 1
  fi
  sleep 0.2
done
wait "$watcher" || { echo "first run: did not catch up"; exit 1; }
watcher=""
stop_peer
echo "first run: SIGTERM -> exit $rc after $stop_ms ms"
[[ "$rc" == 0 ]] || { cat "$work/first.err"; exit 1; }
rm -rf "$work/first-state"

echo "changelog $changelog:"
check offsets "$changelog" | sed 's/^/  /'
changelog_total="$(check offsets "$changelog" | sed -n 's/^total //p')"

# 2. Restart with the same application id and an empty state directory: a full restore.
start_peer second
wait_running second
restart_running=$(( running_ms - launch_ms ))
grep "kafka-streams peer: restored" "$work/second.out" | sed 's/^/  /' || true
restored="$(awk '/^kafka-streams peer: restored/ {n += $4; if ($11 > m) m = $11; c++}
  END {printf "%d %d %d", n, m, c}' "$work/second.out")"
read -r restored_total restored_max_ms restored_lines <<<"$restored"
stop_peer
echo "second run: SIGTERM -> exit $rc after $stop_ms ms"
[[ "$rc" == 0 ]] || { cat "$work/second.err"; exit 1; }

verify_out="$(check verify "$input" "$output")" || true
echo "$verify_out"

awk -v g="$guarantee" -v o="$java_opts" -v i="${instance:-(dynamic)}" -v r="$restart_running" \
    -v n="$restored_total" -v m="$restored_max_ms" -v c="$restored_lines" -v cl="$changelog_total" 'BEGIN {
  printf "guarantee=%s jvm=\"%s\" instance=%s\n", g, o, i
  printf "restart launch->RUNNING %d ms; restored %d records in %d partition lines (changelog holds %d);", r, n, c, cl
  printf " slowest partition %d ms", m
  if (m > 0) printf " (%.0f records/s over it)", n / (m / 1000)
  printf "\n"
}'
echo "second run stderr:"; sed 's/^/  | /' "$work/second.err" | tail -20

[[ "$restored_total" -gt 0 ]] && grep -q "VERIFY OK" <<<"$verify_out"
