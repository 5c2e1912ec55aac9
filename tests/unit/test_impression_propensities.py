"""The propensities serving logs (`ltr_serving.impressions`, over `ltr_core.codec`'s ranking with
exploration) match the empirical frequencies of 10^5 request ids; and the serving settings of
the impression log refuse what they must."""

from __future__ import annotations

from collections import Counter

import numpy as np
import orjson
import pytest

from ltr_core import codec
from ltr_core.events import EventRow, parse_event
from ltr_core.features import FEATURES
from ltr_core.scoring import WeightsScorer
from ltr_core.settings import ConfigError, Settings
from ltr_serving.impressions import ImpressionRecord, impression_events

N_REQUESTS = 100_000
N_CANDIDATES = 6
RATE = 0.3
MAX_POSITION = 4


@pytest.mark.slow
def test_logged_propensities_match_empirical_frequencies() -> None:
    weights = dict(zip(FEATURES, np.linspace(1.0, 0.1, len(FEATURES)), strict=True))
    scorer = WeightsScorer(weights)
    parsed = codec.parse_request(codec.request_body(N_CANDIDATES, seed=1), 1000)
    exploration = codec.Exploration(RATE, MAX_POSITION)
    seen: Counter[tuple[int, int]] = Counter()
    logged: dict[tuple[int, int], float] = {}
    swapped = 0
    for i in range(N_REQUESTS):
        request_id = f"q-{i}"
        ranking = codec.rank_request(parsed, scorer, "v1", request_id, exploration)
        record = ImpressionRecord(
            parsed, request_id, ranking.policy, ranking.shown, ranking.scores, "v1", 0.0,
            exploration,
        )  # fmt: skip
        events = impression_events(record)
        swapped += ranking.policy == "swap"
        for event in events:
            key = (event["deterministic_rank"], event["rank_position"])
            seen[key] += 1
            previous = logged.setdefault(key, event["propensity"])
            assert previous == event["propensity"]  # the same cell, the same propensity
    assert swapped / N_REQUESTS == pytest.approx(RATE, abs=0.01)
    for (rank, position), propensity in logged.items():
        assert seen[rank, position] / N_REQUESTS == pytest.approx(propensity, abs=0.01)
    # each rank's logged propensities over the positions it can reach sum to 1
    for rank in range(1, N_CANDIDATES + 1):
        total = sum(p for (r, _), p in logged.items() if r == rank)
        assert total == pytest.approx(1.0)
    assert isinstance(parse_event(orjson.dumps(events[0])), EventRow)


def test_the_simulated_clock_is_refused_in_production() -> None:
    assert Settings.from_env({"LTR_SIMULATED_CLOCK": "true"}).serving.simulated_clock
    assert Settings.from_env({"LTR_ENVIRONMENT": "production"}).environment == "production"
    with pytest.raises(ConfigError, match="LTR_SIMULATED_CLOCK"):
        Settings.from_env({"LTR_SIMULATED_CLOCK": "1", "LTR_ENVIRONMENT": "production"})
    with pytest.raises(ConfigError, match="LTR_SIMULATED_CLOCK"):
        Settings.from_env({"LTR_SIMULATED_CLOCK": "sometimes"})


def test_impression_log_settings() -> None:
    serving = Settings.from_env({}).serving
    assert (serving.impression_log, serving.impression_queue) == ("file", 10_000)
    assert (serving.explore_rate, serving.explore_max_position) == (0.05, 10)
    assert not serving.feedback_enabled
    with pytest.raises(ConfigError, match="LTR_EXPLORE_RATE"):
        Settings.from_env({"LTR_EXPLORE_RATE": "1.5"})
    with pytest.raises(ConfigError, match="LTR_IMPRESSION_LOG"):
        Settings.from_env({"LTR_IMPRESSION_LOG": "s3"})
    with pytest.raises(ConfigError, match="LTR_IMPRESSION_LOG=kafka needs KAFKA_BOOTSTRAP"):
        Settings.from_env({"LTR_IMPRESSION_LOG": "kafka"})
    kafka = Settings.from_env(
        {
            "LTR_IMPRESSION_LOG": "kafka",
            "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
            "LTR_IMPRESSION_KAFKA_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert kafka.serving.impression_log == "kafka" and kafka.kafka is not None
    assert (kafka.serving.impression_kafka_timeout_s, kafka.serving.impression_kafka_retry_s) == (
        2.5,
        10.0,
    )
    with pytest.raises(ConfigError, match="LTR_IMPRESSION_KAFKA_TIMEOUT_SECONDS"):
        Settings.from_env({"LTR_IMPRESSION_KAFKA_TIMEOUT_SECONDS": "0"})


def _ranked_ids(body: bytes) -> list[str]:
    return [c["lawyer_id"] for c in orjson.loads(body)["candidates"]]


def test_equal_scores_rank_by_id_whatever_order_the_client_lists_them() -> None:
    """A retry may list the same candidates in another order and is answered as the first
    request was, so ties must not follow the listing: both rankers and the interleaving rank
    alice before bob before carol both ways round."""
    same = dict.fromkeys(FEATURES, 0.5)
    lower = dict.fromkeys(FEATURES, 0.1)
    listings = [
        [("bob", same), ("alice", same), ("carol", lower)],
        [("alice", same), ("carol", lower), ("bob", same)],
    ]
    scorer = WeightsScorer(dict.fromkeys(FEATURES, 1.0 / len(FEATURES)))
    other = WeightsScorer(dict(zip(FEATURES, np.linspace(1.0, 0.1, len(FEATURES)), strict=True)))
    answers = set()
    for listing in listings:
        body = orjson.dumps(
            {"case_id": "c-1", "candidates": [{"lawyer_id": i, "features": f} for i, f in listing]}
        )
        parsed = codec.parse_request(body, 1000)
        ranked = codec.rank_request(parsed, scorer, "v1", "r-tie")
        interleaved = codec.rank_interleaved(parsed, scorer, other, "v1", "r-tie")
        answers.add((tuple(_ranked_ids(ranked.body)), tuple(_ranked_ids(interleaved.body))))
    assert answers == {(("alice", "bob", "carol"), ("alice", "bob", "carol"))}
