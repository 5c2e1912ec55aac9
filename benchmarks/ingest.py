"""Ingest throughput: 1M events of one day, from the audit-log file and from Kafka.

    python -m benchmarks.ingest [--events 1000000] [--repeats 3]

Both paths end in the same Parquet (validated, deduplicated, sorted). The Kafka path runs against
a noida-db broker started on 127.0.0.1 with a fresh data dir (topic of 3 partitions).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.common import machine, median_time, report
from ltr_assets.ingest.day import ingest_day
from ltr_assets.ingest.kafka import KafkaDaySource, ensure_topic, publish_events
from ltr_assets.ingest.sources import AuditLogSource
from ltr_assets.lake.paths import Lake
from ltr_assets.simulation.simulator import Simulator, SimulatorConfig
from ltr_core.settings import KafkaSettings
from tests.support.kafka_broker import Broker

DAY = date(2026, 11, 1)
EVENTS_PER_REQUEST = 21.5  # the simulator's average (17.5 candidates + feedback)


def simulate(n_events: int) -> list[dict[str, Any]]:
    requests = int(n_events / EVENTS_PER_REQUEST) + 1
    events = Simulator(
        SimulatorConfig(start=DAY, days=1, seed=1, requests_per_day=requests)
    ).day_events(DAY)
    events = [e for e in events if e["timestamp"].startswith(DAY.isoformat())]
    events.sort(key=lambda e: e["timestamp"])
    return events[:n_events]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    events = simulate(args.events)
    n = len(events)
    print(f"machine: {machine()}; {n} events of {DAY}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        log = root / "audit.jsonl"
        log.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
        lake = Lake(root / "lake")
        files = AuditLogSource(str(log))
        file_s, file_all = median_time(
            lambda: ingest_day(files.read_day(DAY), DAY, lake, "audit_log"), args.repeats
        )
        print(f"file runs (s): {', '.join(f'{t:.2f}' for t in file_all)}")

        broker = Broker()
        broker.start()
        try:
            settings = KafkaSettings(
                KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, KAFKA_TOPIC="match_events"
            )
            ensure_topic(settings, partitions=3)
            publish_s, _ = median_time(lambda: publish_events(settings, events), 1)
            source = KafkaDaySource(settings)
            kafka_s, kafka_all = median_time(
                lambda: ingest_day(source.read_day(DAY), DAY, Lake(root / "k"), "kafka"),
                args.repeats,
            )
            print(f"kafka runs (s): {', '.join(f'{t:.2f}' for t in kafka_all)}")
        finally:
            broker.close()
        same = (root / "k" / "raw_events" / f"{DAY}.parquet").read_bytes() == lake.raw_events(
            DAY
        ).read_bytes()

    report(
        {
            "ingest_events": n,
            "ingest_file_events_per_s": n / file_s,
            "ingest_kafka_events_per_s": n / kafka_s,
            "kafka_publish_events_per_s": n / publish_s,
            "ingest_kafka_to_file_ratio": file_s / kafka_s,
            "ingest_identical_parquet": int(same),
        }
    )


if __name__ == "__main__":
    main()
