from __future__ import annotations

from pathlib import Path

import pytest

from ltr_assets.config import (
    ENV_FILE,
    ConfigError,
    Settings,
    env_file_path,
    layered_env,
    read_env_file,
    write_env_file,
)


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
    assert Settings.from_env({}).score_timeout_ms == 1000.0
    assert Settings.from_env({"LTR_SCORE_TIMEOUT_MS": "250"}).score_timeout_ms == 250.0


def test_thresholds_are_parsed_from_strings() -> None:
    settings = Settings.from_env({"LTR_NDCG_MIN": "0.7", "LTR_MIN_SAMPLES": "250"})
    assert settings.gate.ndcg_min == 0.7 and settings.gate.min_samples == 250
    assert Settings.from_env({}).ips_max_weight == 5.0
    assert Settings.from_env({"LTR_IPS_MAX_WEIGHT": "20"}).ips_max_weight == 20.0


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
        ({"LTR_IPS_MAX_WEIGHT": "0.5"}, "LTR_IPS_MAX_WEIGHT=0.5 must be at least 1"),
        ({"LTR_SCORE_TIMEOUT_MS": "0.5"}, "LTR_SCORE_TIMEOUT_MS='0.5' must be at least 1"),
        ({"LTR_SCORE_TIMEOUT_MS": "inf"}, "LTR_SCORE_TIMEOUT_MS='inf' is not a finite number"),
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


def test_the_env_file_supplies_defaults_beneath_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`$LTR_HOME/ltr.env` fills in what the environment leaves unset; the environment wins."""
    (tmp_path / ENV_FILE).write_text(
        "# a comment\n\nLTR_START_DATE=2026-10-29\nLTR_TRAIN_WINDOW_DAYS='7'\nLTR_NDCG_MIN=0.5\n"
    )
    monkeypatch.setenv("LTR_HOME", str(tmp_path))
    monkeypatch.delenv("LTR_START_DATE", raising=False)
    monkeypatch.delenv("LTR_TRAIN_WINDOW_DAYS", raising=False)
    monkeypatch.setenv("LTR_NDCG_MIN", "0.7")
    settings = Settings.from_env()
    assert settings.start_date == "2026-10-29"
    assert settings.train_window_days == 7
    assert settings.gate.ndcg_min == 0.7  # the environment wins over the file
    monkeypatch.setenv("LTR_START_DATE", "2026-11-01")
    assert Settings.from_env().start_date == "2026-11-01"
    # An explicit mapping is the whole configuration: no file beneath it.
    assert Settings.from_env({"LTR_HOME": str(tmp_path)}).start_date == "2026-01-01"


def test_a_malformed_env_file_line_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ENV_FILE).write_text("LTR_START_DATE 2026-10-29\n")
    with pytest.raises(ConfigError, match="ltr.env:1"):
        read_env_file(tmp_path / ENV_FILE)
    assert read_env_file(tmp_path / "missing.env") == {}


def test_the_demo_writes_the_configuration_it_used(tmp_path: Path) -> None:
    """What `ltr demo` leaves for `make ui` reads back as the same partition range."""
    from ltr_assets.demo import demo_env

    used = Settings.from_env({"LTR_HOME": str(tmp_path), "LTR_START_DATE": "2026-10-29"})
    path = env_file_path({"LTR_HOME": str(tmp_path)})
    write_env_file(path, demo_env(used))
    assert path == tmp_path / "ltr.env"
    assert read_env_file(path) == {"LTR_START_DATE": "2026-10-29", "LTR_TRAIN_WINDOW_DAYS": "14"}
    assert layered_env({"LTR_HOME": str(tmp_path)})["LTR_START_DATE"] == "2026-10-29"


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("s3://ltr-lake/lake", "s3://ltr-lake/lake"),
        ("s3://ltr-lake/a/b/", "s3://ltr-lake/a/b"),
        ("s3://ltr-lake", "s3://ltr-lake"),
        ("/srv/lake", ""),
    ],
)
def test_the_data_dir_may_be_an_s3_url(value: str, url: str) -> None:
    settings = Settings.from_env({"LTR_HOME": "/srv/ltr", "LTR_DATA_DIR": value})
    assert settings.lake_url == url
    assert settings.data_dir == (Path("/srv/ltr/lake") if url else Path(value))


@pytest.mark.parametrize("value", ["s3://", "s3:///lake", "s3://b/../x", "s3://b/a//c"])
def test_a_malformed_s3_data_dir_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="LTR_DATA_DIR"):
        Settings.from_env({"LTR_DATA_DIR": value})
