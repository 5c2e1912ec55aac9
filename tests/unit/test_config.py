from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest

from ltr_core.settings import (
    ENV_FILE,
    RANGES,
    SECRETS,
    ConfigError,
    Settings,
    _shown,
    env_file_path,
    layered_env,
    read_env_file,
    variables,
    write_env_file,
)
from tests.support.cli import run_ltr


def test_defaults_follow_ltr_home() -> None:
    settings = Settings.from_env({"LTR_HOME": "/srv/ltr"})
    assert settings.data_dir == Path("/srv/ltr/lake")
    assert settings.registry_dir == Path("/srv/ltr/registry")
    assert settings.weights_path == Path("/srv/ltr/models/ltr_weights.json")
    assert settings.kafka is None and settings.s3.prefix == "ltr"
    gate = settings.gate
    assert (gate.ndcg_min, gate.fairness_max, gate.latency_p95_ms, gate.min_samples) == (
        0.65,
        0.05,
        15.0,
        100,
    )


def test_the_body_cap_follows_the_candidate_limit_unless_set() -> None:
    assert Settings.from_env({}).serving.max_body_bytes == 64 * 1024 + 2048 * 1000
    assert (
        Settings.from_env({"LTR_MAX_CANDIDATES": "10"}).serving.max_body_bytes == 64 * 1024 + 20480
    )
    assert Settings.from_env({"LTR_MAX_BODY_BYTES": "5000"}).serving.max_body_bytes == 5000
    assert Settings.from_env({}).event_time.max_clock_skew_hours == 24.0
    assert (
        Settings.from_env({"LTR_MAX_CLOCK_SKEW_HOURS": "1.5"}).event_time.max_clock_skew_hours
        == 1.5
    )
    assert Settings.from_env({}).serving.score_timeout_ms == 1000.0
    assert Settings.from_env({"LTR_SCORE_TIMEOUT_MS": "250"}).serving.score_timeout_ms == 250.0


def test_the_event_time_bounds_and_the_kafka_stop_run_have_defaults() -> None:
    assert Settings.from_env({}).event_time.max_event_age_days == 30
    kafka = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k:9092"}).kafka
    assert kafka is not None and kafka.stop_records == 100
    assert kafka.max_event_age == timedelta(days=30)
    env = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "LTR_MAX_EVENT_AGE_DAYS": "400",
           "LTR_KAFKA_STOP_RECORDS": "7"}  # fmt: skip
    settings = Settings.from_env(env)
    assert settings.event_time.max_event_age_days == 400 and settings.kafka is not None
    assert settings.kafka.max_event_age == timedelta(days=400) and settings.kafka.stop_records == 7


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
        ({"LTR_TRAIN_WINDOW_DAYS": "0"}, "LTR_TRAIN_WINDOW_DAYS='0' is outside its range [1, 366]"),
        ({"LTR_SCORER": "neural"}, "must be one of"),
        ({"LTR_START_DATE": "26/11/2026"}, "not a date"),
        ({"LTR_MAX_CLOCK_SKEW_HOURS": "-1"}, "outside its range [0, 8784]"),
        ({"LTR_MAX_BODY_BYTES": "100"}, "outside its range [1024, "),
        ({"LTR_IPS_MAX_WEIGHT": "0.5"}, "LTR_IPS_MAX_WEIGHT='0.5' is outside its range [1, "),
        ({"LTR_NDCG_MIN": "-1"}, "LTR_NDCG_MIN='-1' is outside its range [0, 1]"),
        ({"WEIGHTS_POLL_SECONDS": "1e-6"}, "outside its range 0 or [0.1, 86400]"),
        ({"LTR_TRAIN_MAX_ROWS": "500"}, "outside its range 0 or [10000, "),
        (
            {"LTR_MAX_EVENT_AGE_DAYS": "0"},
            "LTR_MAX_EVENT_AGE_DAYS='0' is outside its range [1, 36500]",
        ),
        (
            {"LTR_MAX_EVENT_AGE_DAYS": "40000"},
            "LTR_MAX_EVENT_AGE_DAYS='40000' is outside its range",
        ),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "LTR_KAFKA_STOP_RECORDS": "1"},
            "LTR_KAFKA_STOP_RECORDS='1' is outside its range [2, ",
        ),
        ({"LTR_SCORE_TIMEOUT_MS": "0.5"}, "LTR_SCORE_TIMEOUT_MS='0.5' is outside its range [1, "),
        ({"LTR_SCORE_TIMEOUT_MS": "inf"}, "LTR_SCORE_TIMEOUT_MS='inf' is not a finite number"),
        # integers in ASCII digits only (Python's int() also takes these)
        ({"LTR_MAX_CANDIDATES": "1_000"}, "LTR_MAX_CANDIDATES='1_000' is not an integer"),
        ({"LTR_KEEP_VERSIONS": "٣"}, "is not an integer"),
        ({"LTR_KEEP_VERSIONS": "2.5"}, "LTR_KEEP_VERSIONS='2.5' is not an integer"),
        ({"LTR_SERVING_URL": "not-a-url"}, "LTR_SERVING_URL='not-a-url' is not an http(s) URL"),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_TOPIC": "match events"},
            "KAFKA_TOPIC='match events' is not a Kafka topic name",
        ),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_TOPIC": ".."}, "is not a Kafka topic name"),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_TOPIC": "t" * 250},
            "is not a Kafka topic name",
        ),
        ({"LTR_SERVING_URL": "ftp://host/x"}, "is not an http(s) URL with a host"),
        ({"LTR_SERVING_URL": "http://127.0.0.1:99999"}, "a port from 1 to 65535"),
        ({"LTR_SERVING_URL": "http://127.0.0.1:0/"}, "a port from 1 to 65535"),
        # urlsplit would drop the newline and check another URL than the one used
        ({"LTR_SERVING_URL": "http://127.0.0.1:8000/\nx"}, "holds whitespace or a control"),
        ({"LTR_SERVING_URL": "http://host\x00:8000"}, "holds whitespace or a control"),
        (
            {"S3_ENDPOINT": "http://127.0.0.1:9000\n/x"},
            "S3_ENDPOINT='http://127.0.0.1:9000\\n/x' holds",
        ),
        ({"S3_ENDPOINT": "minio:9000"}, "is not an http(s) URL"),
        (
            {"NOTIFY_WEBHOOK_URL": "https://hooks.example/T0 B0"},
            "NOTIFY_WEBHOOK_URL=<secret> holds",
        ),
        # a webhook URL carries its secret: the error names the variable, never the value
        (
            {"NOTIFY_WEBHOOK_URL": "http://hooks.example:abc/T0/B0/s3cr3t"},
            "NOTIFY_WEBHOOK_URL=<secret> is not an http(s) URL",
        ),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:abc"},
            "KAFKA_BOOTSTRAP_SERVERS='127.0.0.1:abc' is not a list of Kafka brokers",
        ),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,:9093"}, "(':9093': the port must be a number"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k1:70000"}, "is not a list of Kafka brokers"),
        # credentials in the broker list: refused, and the error never repeats them
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,user:s3/cr,3t@k2:9093"},
            "KAFKA_BOOTSTRAP_SERVERS='<hidden>@k2:9093' holds `user:password@`",
        ),
        (
            {"S3_ENDPOINT": "http://AKIA:wJal/rXU tnF@127.0.0.1:9000"},
            "S3_ENDPOINT='http://<hidden>@127.0.0.1:9000' holds",
        ),
        (
            {"S3_ENDPOINT": "http://AKIA:wJalrXUtnF@127.0.0.1:9000"},
            "S3_ENDPOINT='http://<hidden>@127.0.0.1:9000' holds `user:password@`: this URL",
        ),
        (
            {"LTR_SERVING_URL": "http://svc:s3cr3t@127.0.0.1:8000"},
            "LTR_SERVING_URL='http://<hidden>@127.0.0.1:8000' holds `user:password@`",
        ),
        ({"KAFKA_BOOTSTRAP_SERVERS": "PLAINTEXT://k:9092"}, "is a URL: name the broker"),
        (
            {"S3_ENDPOINT": "http://user:s3cr3t@127.0.0.1:9000\n/x"},
            "S3_ENDPOINT='http://<hidden>@127.0.0.1:9000\\n/x' holds",
        ),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env(env)


def test_a_kafka_topic_name_kafka_accepts_is_taken_as_it_is() -> None:
    for name in ("match_events", "ltr.events-v2", "t" * 249):
        env = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_TOPIC": name}
        kafka = Settings.from_env(env).kafka
        assert kafka is not None and kafka.topic == name


def test_a_candidate_limit_out_of_range_is_one_error_not_two() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"LTR_MAX_CANDIDATES": "100000000000000000000"})
    assert str(refused.value) == (
        "LTR_MAX_CANDIDATES='100000000000000000000' is outside its range [1, 100000]"
    )


def test_integers_may_be_written_in_exponent_form_and_urls_are_kept() -> None:
    settings = Settings.from_env(
        {"LTR_MAX_CANDIDATES": "1e3", "LTR_KEEP_VERSIONS": " 7 ", "LTR_SERVING_URL": ""}
    )
    assert settings.serving.max_candidates == 1000 and settings.keep_versions == 7
    assert settings.serving.url == ""
    url = "https://ranker.internal:8443/base"
    assert Settings.from_env({"LTR_SERVING_URL": url}).serving.url == url


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
    assert settings.serving.reload_token.get_secret_value() == "tok-123"


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
    """What `ltr demo` leaves for `make ui` reads back as the same partition range and the
    same online decision rule."""
    from ltr_assets.demo import demo_env

    used = Settings.from_env(
        {
            "LTR_HOME": str(tmp_path),
            "LTR_START_DATE": "2026-10-29",
            "LTR_TRAIN_WINDOW_DAYS": "7",
            "LTR_MAX_CANDIDATES": "200",
            "LTR_NUM_THREADS": "1",
        }
    )
    path = env_file_path({"LTR_HOME": str(tmp_path)})
    write_env_file(path, demo_env(used))
    assert path == tmp_path / "ltr.env"
    assert read_env_file(path) == {
        "LTR_START_DATE": "2026-10-29",
        "LTR_TRAIN_WINDOW_DAYS": "7",
        "LTR_MAX_CANDIDATES": "200",
        "LTR_NUM_THREADS": "1",
        "LTR_INTERLEAVE_MIN_REQUESTS": "200",
        "LTR_INTERLEAVE_MIN_EVIDENCE": "30",
        "LTR_CANARY_MAX_DAYS": "3",
    }
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


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LTR_HOME", "s3://ltr-bucket"),
        ("LTR_REGISTRY_DIR", "s3://ltr-bucket/registry"),
        ("LTR_HOME", "gs://ltr-bucket"),
        ("WEIGHTS_PATH", "$BUCKET/weights.json"),
    ],
)
def test_a_url_for_a_local_path_names_the_variable(name: str, value: str) -> None:
    """Taken for a local folder named like it, each container would have its own."""
    with pytest.raises(ConfigError, match=f"{name}=.*must be a local path"):
        Settings.from_env({name: value, "BUCKET": "s3://b"})


def test_a_folder_with_a_colon_in_its_name_is_a_folder() -> None:
    settings = Settings.from_env({"LTR_DATA_DIR": "lake-2026-11-01T02:15"})
    assert settings.lake_url == "" and settings.data_dir == Path("lake-2026-11-01T02:15")


@pytest.mark.parametrize(
    "value",
    [
        "s3://", "s3:///lake", "s3://b/../x", "s3://b/a//c",
        # a mistyped or foreign URL silently became a local folder named like it
        "s3:/ltr-lake/lake", "s3:ltr-lake", "S3:/b", "gs://ltr-lake/lake", "file:///srv/lake",
    ],
)  # fmt: skip
def test_a_malformed_s3_data_dir_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="LTR_DATA_DIR"):
        Settings.from_env({"LTR_DATA_DIR": value})


@pytest.mark.parametrize("name", sorted(RANGES))
def test_every_numeric_variable_refuses_values_outside_its_range(name: str) -> None:
    """1e12 used to overflow a timedelta deep inside (LTR_MAX_CLOCK_SKEW_HOURS stopped the code
    location from loading) with no variable named; nonsense like -1 was taken."""
    allowed = RANGES[name]
    kafka = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}  # the KAFKA_* ones are read with it
    for raw in ("1e12", "-1", "99999999999999999999"):
        with pytest.raises(ConfigError, match=f"^{name}=.* is outside its range"):
            Settings.from_env({**kafka, name: raw})
    # The two rates share the request-id hash range (their sum is at most 1): each bound is
    # accepted with the other rate at 0.
    partner = {"LTR_EXPLORE_RATE": "LTR_INTERLEAVE_RATE", "LTR_INTERLEAVE_RATE": "LTR_EXPLORE_RATE"}
    other = {partner[name]: "0"} if name in partner else {}
    for bound in (allowed.low, allowed.high):  # the bounds themselves are accepted
        Settings.from_env({**kafka, **other, name: f"{bound:g}"})
    if allowed.zero_off:
        Settings.from_env({**kafka, name: "0"})


def test_the_explore_and_interleave_rates_may_not_sum_past_one() -> None:
    assert Settings.from_env({"LTR_EXPLORE_RATE": "0.8"}).serving.interleave_rate == 0.2
    with pytest.raises(ConfigError, match="LTR_EXPLORE_RATE .* LTR_INTERLEAVE_RATE"):
        Settings.from_env({"LTR_EXPLORE_RATE": "0.5", "LTR_INTERLEAVE_RATE": "0.6"})


def test_every_numeric_variable_is_declared_with_its_range() -> None:
    """No int or float variable of the schema is read without a range."""
    numeric = {name for name, field in variables() if field.annotation in (int, float)}
    assert numeric and numeric == set(RANGES)
    assert RANGES["LTR_NUM_THREADS"].zero_off


def test_a_malformed_env_file_line_is_named_by_number_never_echoed(tmp_path: Path) -> None:
    """A line with a typo used to be echoed whole: a password in it reached the CLI's output
    and the code location's load error."""
    path = tmp_path / ENV_FILE
    path.write_text("LTR_START_DATE=2026-11-01\nKAFKA_SASL_PASSWORD hunter2-secret\n")
    with pytest.raises(ConfigError) as error:
        read_env_file(path)
    assert f"{path}:2" in str(error.value) and "hunter2" not in str(error.value)


def test_a_secret_s_bad_value_is_never_shown() -> None:
    for name in SECRETS & set(RANGES):  # no secret is numeric today; the rule holds anyway
        with pytest.raises(ConfigError) as error:
            Settings.from_env({name: "hunter2"})
        assert "hunter2" not in str(error.value)
    assert _shown("LTR_RELOAD_TOKEN", "hunter2") == "LTR_RELOAD_TOKEN=<secret>"


def test_an_unknown_ltr_variable_in_the_env_file_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / ENV_FILE
    path.write_text("LTR_SCORRER=model\nLTR_SCORER=weights\nOTHER_TOOL=1\n")
    with caplog.at_level(logging.WARNING, logger="ltr_core.settings"):
        values = read_env_file(path)
        read_env_file(path)  # the settings are read again: no second warning
    assert values == {"LTR_SCORRER": "model", "LTR_SCORER": "weights", "OTHER_TOOL": "1"}
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}:1: LTR_SCORRER is not a variable the project reads (a typo?)"
    ]


@pytest.mark.slow  # starts the CLI as a process: not in make test-fast
def test_the_unknown_variable_warning_is_one_line_without_python_source(tmp_path: Path) -> None:
    (tmp_path / ENV_FILE).write_text("LTR_SCORRER=model\n")
    done = run_ltr("registry", "list", home=tmp_path)
    assert done.returncode == 0, done
    assert done.stderr.splitlines() == [
        f"{tmp_path / ENV_FILE}:1: LTR_SCORRER is not a variable the project reads (a typo?)"
    ]


def test_the_env_file_cannot_move_the_home_it_lives_in(tmp_path: Path) -> None:
    """LTR_HOME used to be read from ./var/ltr.env although it locates that very file."""
    (tmp_path / ENV_FILE).write_text(f"LTR_HOME={tmp_path / 'elsewhere'}\n")
    with pytest.raises(ConfigError, match="LTR_HOME cannot be set in ltr.env"):
        Settings.from_env(layered_env({"LTR_HOME": str(tmp_path)}))


def test_variables_in_a_path_are_expanded_or_refused_never_kept() -> None:
    env = {"LTR_AUDIT_LOG": "${EVENTS}/$SITE/*.jsonl", "EVENTS": "/srv/events", "SITE": "a"}
    assert Settings.from_env(env).audit_log == "/srv/events/a/*.jsonl"
    env = {"LTR_DATA_DIR": "$ROOT/lake", "LTR_REGISTRY_DIR": "/r/$$x", "ROOT": "/srv"}
    settings = Settings.from_env(env)
    assert settings.data_dir == Path("/srv/lake") and settings.registry_dir == Path("/r/$x")
    unset = r"LTR_AUDIT_LOG='\$\{EVENTS\}/\*.jsonl': \$EVENTS is not set"
    with pytest.raises(ConfigError, match=unset):
        Settings.from_env({"LTR_AUDIT_LOG": "${EVENTS}/*.jsonl"})
    with pytest.raises(ConfigError, match="WEIGHTS_PATH=.*a \\$ must start"):
        Settings.from_env({"WEIGHTS_PATH": "/w/${HOME:-x}.json"})


def test_a_leading_tilde_is_the_home_folder_as_in_a_shell() -> None:
    """Compose files and manifests pass `~` on unexpanded: it must not become a folder named
    `~` in the working directory."""
    env = {"HOME": "/home/ops", "LTR_HOME": "~/ltr", "WEIGHTS_PATH": "~"}
    settings = Settings.from_env(env)
    assert settings.home == Path("/home/ops/ltr") and settings.weights_path == Path("/home/ops")
    assert Settings.from_env({**env, "LTR_HOME": "/srv/a~b"}).home == Path("/srv/a~b")
    with pytest.raises(ConfigError, match="LTR_REGISTRY_DIR='~ops/r': only ~ or ~/"):
        Settings.from_env({**env, "LTR_REGISTRY_DIR": "~ops/r"})
    with pytest.raises(ConfigError, match="LTR_HOME='~/ltr': ~ needs HOME to be set"):
        Settings.from_env({**env, "HOME": ""})  # not /ltr


def test_the_env_file_of_a_home_under_tilde_is_read_from_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LTR_HOME=~/ltr: its ltr.env is $HOME/ltr/ltr.env, not ./~/ltr/ltr.env."""
    (tmp_path / "ltr").mkdir()
    (tmp_path / "ltr" / "ltr.env").write_text("LTR_START_DATE=2026-10-01\n")
    monkeypatch.chdir(tmp_path)
    env = {"HOME": str(tmp_path), "LTR_HOME": "~/ltr"}
    assert env_file_path(env) == tmp_path / "ltr" / "ltr.env"
    assert str(Settings.from_env(layered_env(env)).start_date) == "2026-10-01"


def test_the_documented_defaults_can_be_written_out_with_ltr_home_unset() -> None:
    """docs/configuration.md shows the paths' defaults as `$LTR_HOME/...`: set as shown, with
    LTR_HOME at its default, they mean the same."""
    written = {"LTR_REGISTRY_DIR": "${LTR_HOME}/registry", "LTR_DATA_DIR": "$LTR_HOME/lake"}
    default = Settings.from_env({})
    settings = Settings.from_env(written)
    assert settings.registry_dir == default.registry_dir == Path("var/registry")
    assert settings.data_dir == default.data_dir
    elsewhere = Settings.from_env({**written, "LTR_HOME": "/srv/ltr"})
    assert elsewhere.registry_dir == Path("/srv/ltr/registry")


def test_empty_days_are_refused_unless_listed_or_all_are_allowed() -> None:
    from datetime import date

    assert not Settings.from_env({}).allow_empty_days.allows(date(2026, 12, 25))
    listed = Settings.from_env({"LTR_ALLOW_EMPTY_DAYS": "2026-12-25, 2026-12-26"})
    assert listed.allow_empty_days.allows(date(2026, 12, 26))
    assert not listed.allow_empty_days.allows(date(2026, 12, 27))
    assert Settings.from_env({"LTR_ALLOW_EMPTY_DAYS": "all"}).allow_empty_days.allows(
        date(2026, 1, 1)
    )
    with pytest.raises(ConfigError, match="LTR_ALLOW_EMPTY_DAYS=.*'12/25' is not a date"):
        Settings.from_env({"LTR_ALLOW_EMPTY_DAYS": "2026-12-24,12/25"})


@pytest.mark.parametrize("brokers", ["k:9092", "127.0.0.1", "[::1]:9092", "[::1]", "a:1, b:65535"])
def test_broker_lists_aiokafka_takes_are_accepted(brokers: str) -> None:
    kafka = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": brokers}).kafka
    assert kafka is not None and kafka.bootstrap_servers == brokers


def test_a_serving_log_file_must_be_complete_before_its_days_nightly_read() -> None:
    """A file open longer than the 2 h 15 min from a day's end to its nightly read would hold
    that day's last events past the read, and `/feedback` would refuse every event as late."""
    assert Settings.from_env({"LTR_SERVING_LOG_ROTATE_SECONDS": "7200"}).serving.log_rotate_s
    with pytest.raises(ConfigError, match="LTR_SERVING_LOG_ROTATE_SECONDS"):
        Settings.from_env({"LTR_SERVING_LOG_ROTATE_SECONDS": "86400"})
