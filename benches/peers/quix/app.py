"""Quix Streams benchmark peer: hourly consumption statistics per meter.

Reads meter readings (key = meter id, value = JSON {"meter_id", "ts", "kwh"}),
drops readings with kwh < 0, aggregates them in 1-hour tumbling event-time
windows (aligned to the epoch, 5 minutes grace) per meter, and emits one JSON
result per meter and window once the window has closed.

Configuration (environment variables):
  BOOTSTRAP          Kafka bootstrap servers (required)
  INPUT_TOPIC        default "meter-readings"
  OUTPUT_TOPIC       default "meter-hourly-averages"
  CONSUMER_GROUP     default "quix-peer"
  GUARANTEE          "at-least-once" (default) or "exactly-once"
  COMMIT_INTERVAL_S  checkpoint interval in seconds, default 1.0
  STATE_DIR          RocksDB state directory; default a fresh temporary
                     directory that is removed again on exit

Runs until SIGTERM (or SIGINT), then commits a last checkpoint and exits 0.
Prints "quix peer: RUNNING" to stdout when the processing loop starts.
"""

import signal
import sys


def _on_early_sigterm(signum, frame) -> None:
    # Until Application.run() installs its own handler there is nothing to
    # commit, so a stop request simply ends the process successfully.
    raise SystemExit(0)


# Installed before the (slow) imports below so that a SIGTERM during start-up
# also ends the process with status 0.
signal.signal(signal.SIGTERM, _on_early_sigterm)

import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from datetime import timedelta  # noqa: E402

# confluent_kafka's schema-registry client (imported by quixstreams) pulls in
# authlib, which forces its DeprecationWarnings to "always" at import time and
# would print one on every start. Install the ignore rule after that module so
# it takes precedence.
try:
    import authlib.deprecate  # noqa: F401, E402
except ImportError:
    pass
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"authlib\.")

from quixstreams import Application  # noqa: E402
from quixstreams.dataframe.windows import Count, Max, Mean, Min  # noqa: E402
from quixstreams.models import TopicConfig  # noqa: E402

WINDOW = timedelta(hours=1)
GRACE = timedelta(minutes=5)
# Single-broker cluster: every topic this app may create gets one replica.
# Changelog topics copy the replication factor of the input topic.
REPLICATION_FACTOR = 1

GUARANTEES = ("at-least-once", "exactly-once")

# Message logged by Application.run() right before it enters the poll loop.
_STARTED_MESSAGE = "The application started and is now processing incoming messages"


class _RunningAnnouncer(logging.Filter):
    """Prints the RUNNING line when the "started" record of quixstreams.app passes.

    Attached to the "quixstreams.app" logger, whose level is lowered to INFO so
    that the record is created at all. Records below WARNING are swallowed here,
    so the stderr output stays at WARNING level.
    """

    def __init__(self) -> None:
        super().__init__()
        self.announced = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.announced and record.getMessage().startswith(_STARTED_MESSAGE):
            self.announced = True
            print("quix peer: RUNNING", flush=True)
        return record.levelno >= logging.WARNING


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _fail(message: str) -> None:
    print(f"quix peer: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _event_time(value, headers, timestamp, timestamp_type) -> int:
    """Timestamp extractor: the event time is the `ts` field (unix ms)."""
    return value["ts"]


def _non_negative(value) -> bool:
    return value["kwh"] >= 0


def _to_output(window: dict, key: bytes, timestamp: int, headers) -> dict:
    """Maps a closed window of one meter to the output record value."""
    return {
        "meter_id": key.decode("utf-8"),
        "window_start_ms": window["start"],
        "window_end_ms": window["end"],
        "avg": float(window["avg"]),
        "count": window["count"],
        "min": float(window["min"]),
        "max": float(window["max"]),
    }


def main() -> int:
    bootstrap = os.environ.get("BOOTSTRAP", "").strip()
    if not bootstrap:
        _fail("BOOTSTRAP is required")
    input_topic_name = _env("INPUT_TOPIC", "meter-readings")
    output_topic_name = _env("OUTPUT_TOPIC", "meter-hourly-averages")
    consumer_group = _env("CONSUMER_GROUP", "quix-peer")
    guarantee = _env("GUARANTEE", "at-least-once")
    if guarantee not in GUARANTEES:
        _fail(f"GUARANTEE must be one of {', '.join(GUARANTEES)}, got {guarantee!r}")
    try:
        commit_interval = float(_env("COMMIT_INTERVAL_S", "1.0"))
    except ValueError:
        _fail("COMMIT_INTERVAL_S must be a number of seconds")

    state_dir = os.environ.get("STATE_DIR", "").strip()
    temp_state_dir = None
    if not state_dir:
        temp_state_dir = tempfile.mkdtemp(prefix="quix-peer-state-")
        state_dir = temp_state_dir

    announcer = _RunningAnnouncer()
    app_logger = logging.getLogger("quixstreams.app")
    app_logger.setLevel(logging.INFO)
    app_logger.addFilter(announcer)

    try:
        app = Application(
            broker_address=bootstrap,
            consumer_group=consumer_group,
            auto_offset_reset="earliest",
            commit_interval=commit_interval,
            processing_guarantee=guarantee,
            state_dir=state_dir,
            use_changelog_topics=True,
            loglevel="WARNING",
        )

        input_topic = app.topic(
            input_topic_name,
            key_deserializer="bytes",
            value_deserializer="json",
            timestamp_extractor=_event_time,
            config=TopicConfig(
                num_partitions=1, replication_factor=REPLICATION_FACTOR
            ),
        )
        output_topic = app.topic(
            output_topic_name,
            key_serializer="bytes",
            value_serializer="json",
            config=TopicConfig(
                num_partitions=input_topic.broker_config.num_partitions,
                replication_factor=REPLICATION_FACTOR,
            ),
        )

        sdf = app.dataframe(input_topic)
        sdf = sdf.filter(_non_negative)
        sdf = (
            sdf.tumbling_window(duration_ms=WINDOW, grace_ms=GRACE)
            .agg(
                count=Count(),
                avg=Mean("kwh"),
                min=Min("kwh"),
                max=Max("kwh"),
            )
            # "partition": a window closes when the partition's event time passes
            # its end + grace, whichever key advanced it (default "key" would
            # only close a meter's windows on a later reading of that meter).
            .final(closing_strategy="partition")
        )
        sdf = sdf.apply(_to_output, metadata=True)
        sdf.to_topic(output_topic)

        app.run()
    finally:
        if temp_state_dir is not None:
            shutil.rmtree(temp_state_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
