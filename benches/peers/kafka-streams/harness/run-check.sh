#!/usr/bin/env bash
# Runs the Kafka Streams peer once against fresh topics, measures it and verifies its output.
#
#   harness/run-check.sh <guarantee> <meters> <hours> <interval-min> <partitions> <extras 0|1>
#
# Environment: BOOTSTRAP (default: the address in <repo>/.weir-kafka/bootstrap), JAVA_OPTS (JVM flags
# for the peer, default "-Xmx512m"), THREADS, COMMIT_INTERVAL_MS (passed through),
# KEEP_TOPICS=1 to leave the topics and the consumer group behind.
# Prints the throughput from process launch, and from the RUNNING line, to the moment the committed
# offsets reached the end of the input, plus the JVM's peak RSS (VmHWM). Exits non-zero when the peer
# failed, did not exit 0 on SIGTERM, or the output did not verify.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$here/../../.." && pwd)"
jar="$here/target/weir-peer-kafka-streams.jar"
guarantee="$1" meters="$2" hours="$3" interval="$4" partitions="$5" extras="$6"
export BOOTSTRAP="${BOOTSTRAP:-$(cat "$repo/.weir-kafka/bootstrap")}"
java_opts="${JAVA_OPTS:--Xmx512m}"

run="ks-peer-dev-$(date +%s)-$RANDOM"
input="$run-in" output="$run-out" app="$run-app"
work="$(mktemp -d /tmp/ks-peer-run.XXXXXX)"
classes="$here/target/harness-classes"
mkdir -p "$classes"
javac -nowarn -d "$classes" -cp "$jar" "$here/harness/PeerCheck.java"
check() { java -cp "$classes:$jar" PeerCheck "$@"; }
pid="" watcher=""
cleanup() {
  for p in $pid $watcher; do kill "$p" 2>/dev/null || true; done
  if [[ "${KEEP_TOPICS:-0}" != 1 ]]; then
    check delete "$input" "$output" "$app-hourly-agg-changelog" >/dev/null 2>&1 || true
    # Kafka Streams does not leave the group on close, so the group only empties after the session
    # timeout; its deletion is best effort.
    check delete "group:$app" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }

check create "$input" "$partitions" >/dev/null
check create "$output" "$partitions" >/dev/null
produced="$(check produce "$input" "$meters" "$hours" "$interval" 42 "$extras")"
echo "$produced"
records="$(sed -n 's/^produced \([0-9]*\) records.*/\1/p' <<<"$produced")"

# The watcher starts first so that its own start-up does not count; it reports the wall-clock time at
# which it first saw the committed offsets at the end of the input.
check wait-group "$app" "$input" 900 >"$work/caught" 2>/dev/null &
watcher=$!
sleep 2
launch_ms="$(now_ms)"
# shellcheck disable=SC2086
INPUT_TOPIC="$input" OUTPUT_TOPIC="$output" APPLICATION_ID="$app" GUARANTEE="$guarantee" \
  STATE_DIR="$work/state" java $java_opts -jar "$jar" >"$work/stdout" 2>"$work/stderr" &
pid=$!

running_ms=""
for _ in $(seq 1 1200); do
  if grep -q "kafka-streams peer: RUNNING" "$work/stdout" 2>/dev/null; then running_ms="$(now_ms)"; break; fi
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.05
done
if [[ -z "$running_ms" ]]; then
  echo "peer never reached RUNNING"; cat "$work/stderr"; exit 1
fi

set +e; wait "$watcher"; set -e
watcher=""
caught="$(cat "$work/caught")"
done_ms="$(sed -n 's/^caught-up-at-ms \([0-9]*\).*/\1/p' <<<"$caught")"
hwm="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
kill -TERM "$pid"
stop_start="$(now_ms)"
set +e; wait "$pid"; rc=$?; set -e
pid=""
stop_ms=$(( $(now_ms) - stop_start ))

if [[ -z "$done_ms" ]]; then echo "$caught"; cat "$work/stderr"; exit 1; fi
verify_out="$(check verify "$input" "$output")" || true
echo "$verify_out"

awk -v r="$records" -v l="$launch_ms" -v u="$running_ms" -v d="$done_ms" -v h="$hwm" \
    -v g="$guarantee" -v rc="$rc" -v s="$stop_ms" -v o="$java_opts" 'BEGIN {
  printf "guarantee=%s jvm=\"%s\" records=%d\n", g, o, r
  printf "launch->RUNNING %.2f s, launch->caught-up %.2f s, RUNNING->caught-up %.2f s\n", (u-l)/1000, (d-l)/1000, (d-u)/1000
  printf "throughput from launch %.0f records/s, from RUNNING %.0f records/s\n", r/((d-l)/1000), r/((d-u)/1000)
  printf "peak RSS (VmHWM) %.1f MiB; SIGTERM -> exit %d after %d ms\n", h/1024, rc, s
}'
echo "peer stderr:"; sed 's/^/  | /' "$work/stderr" | tail -20

[[ "$rc" == 0 ]] && grep -q "VERIFY OK" <<<"$verify_out"
