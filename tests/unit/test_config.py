from __future__ import annotations

from pathlib import Path

import pytest

from ltr_assets.config import ConfigError, Settings


def test_defaults_follow_ltr_home() -> None:
    settings = Settings.from_env({"LTR_HOME": "/srv/ltr"})
    assert settings.data_dir == Path("/srv/ltr/lake")
    assert settings.registry_dir == Path("/srv/ltr/registry")
    assert settings.weights_path == Path("/srv/ltr/models/ltr_weights.json")
    assert settings.kafka is None and settings.s3_prefix == "ltr"
    gate = settings.gate
    assert (gate.ndcg_min, gate.fairness_max, gate.latency_p95_ms, gate.min_samples) == (
        0.65,
        0.05,
        15.0,
        100,
    )


def test_the_body_cap_follows_the_candidate_limit_unless_set() -> None:
    assert Settings.from_env({}).max_body_bytes == 64 * 1024 + 2048 * 1000
    assert Settings.from_env({"LTR_MAX_CANDIDATES": "10"}).max_body_bytes == 64 * 1024 + 20480
    assert Settings.from_env({"LTR_MAX_BODY_BYTES": "5000"}).max_body_bytes == 5000
    assert Settings.from_env({}).max_clock_skew_hours == 24.0
    assert Settings.from_env({"LTR_MAX_CLOCK_SKEW_HOURS": "1.5"}).max_clock_skew_hours == 1.5


def test_thresholds_are_parsed_from_strings() -> None:
    settings = Settings.from_env({"LTR_NDCG_MIN": "0.7", "LTR_MIN_SAMPLES": "250"})
    assert settings.gate.ndcg_min == 0.7 and settings.gate.min_samples == 250


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LTR_NDCG_MIN": "high"}, "LTR_NDCG_MIN='high' is not a number"),
        ({"LTR_FAIRNESS_MAX": "nan"}, "not a finite number"),
        ({"LTR_MIN_SAMPLES": "1.5"}, "not an integer"),
        ({"LTR_TRAIN_WINDOW_DAYS": "0"}, "at least 1"),
        ({"LTR_SCORER": "neural"}, "must be one of"),
        ({"LTR_START_DATE": "26/11/2026"}, "not a date"),
        ({"LTR_MAX_CLOCK_SKEW_HOURS": "-1"}, "must not be negative"),
        ({"LTR_MAX_BODY_BYTES": "100"}, "at least 1024"),
    ],
)
def test_bad_values_name_the_variable(env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_secrets_never_show_in_the_settings_repr() -> None:
    settings = Settings.from_env(
        {
            "LTR_RELOAD_TOKEN": "tok-123",
            "KAFKA_SASL_PASSWORD": "pw-456",
            "NOTIFY_WEBHOOK_URL": "https://hooks.example/T000/secret-789",
        }
    )
    text = repr(settings)
    assert "tok-123" not in text and "pw-456" not in text and "secret-789" not in text
    assert settings.reload_token == "tok-123"
