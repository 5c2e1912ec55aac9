"""The production deployment files (deploy/) agree with each other, with Dagster's schemas and
with the configuration reference (docs/configuration.md, generated from the settings schema).

The compose stack itself is built and run by tests/deploy/test_compose_stack.py; Kubernetes and
Helm are not available here (no cluster), so their files are checked only as files. Checked here:
every file parses; the compose instance and workspace validate against Dagster's own config schemas
(dagster-docker and dagster-postgres are installed); every environment variable the project's
services get is in the configuration reference (or is Dagster's own) and parses with the project's
Settings; ports, images, the network and the volume agree across the files; the Dockerfiles
install from uv.lock.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from ltr_core.settings import KafkaSettings, S3Settings, Settings
from ltr_core.settings_doc import documented_variables

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
INSTANCE = DEPLOY / "dagster-compose.yaml"
WORKSPACE = DEPLOY / "workspace-compose.yaml"
HELM = DEPLOY / "helm" / "values.yaml"
DOCKERFILES = {"dagster": DEPLOY / "Dockerfile.dagster", "serving": DEPLOY / "Dockerfile.serving"}

# The services of the compose file: all run the project's code (Postgres, Kafka and S3 are the
# host's, named by variables).
PROJECT_SERVICES = ("code-server", "webserver", "daemon", "serving-a", "serving-b")
SERVING_SERVICES = ("serving-a", "serving-b")
DAGSTER_SERVICES = ("code-server", "webserver", "daemon")
# Variables Dagster itself reads (not the project): documented by Dagster.
DAGSTER_OWN = {"DAGSTER_HOME", "DAGSTER_CURRENT_IMAGE"}

SERVING_PORT = 8000
WEBSERVER_PORT = 3000
CODE_SERVER_PORT = 4000
# The compose file's port variables and their defaults (every service on the host's network).
PORT_VARIABLES = {
    "LTR_SERVING_PORT_A": SERVING_PORT,
    "LTR_SERVING_PORT_B": SERVING_PORT + 1,
    "LTR_WEBSERVER_PORT": WEBSERVER_PORT,
    "LTR_CODE_SERVER_PORT": CODE_SERVER_PORT,
}


def _load(path: Path) -> dict[str, Any]:
    with path.open() as f:
        document = yaml.safe_load(f)
    assert isinstance(document, dict), path  # every file read here is a mapping at its top
    return document


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(COMPOSE)


@pytest.fixture(scope="module")
def instance() -> dict[str, Any]:
    return _load(INSTANCE)


@pytest.fixture(scope="module")
def helm() -> dict[str, Any]:
    return _load(HELM)


def is_documented(name: str) -> bool:
    return name in documented_variables() or name in DAGSTER_OWN


def interpolate(value: object) -> str:
    """Compose's `${VAR:-default}` / `${VAR:?error}` / `${VAR}` with nothing set: the default,
    a placeholder for a required value, or empty."""

    def one(match: re.Match[str]) -> str:
        op, arg = match.group(2), match.group(3) or ""
        if op == ":-":
            return arg
        if op == ":?":
            return "required-value"
        return ""

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", one, str(value))


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping (so YAML anchors can merge)"
    return {key: interpolate(value) for key, value in env.items()}


def command_flag(command: list[str], *flags: str) -> str:
    for i, part in enumerate(command):
        if part in flags:
            return interpolate(command[i + 1])
        for flag in flags:
            if part.startswith(flag + "="):
                return interpolate(part.split("=", 1)[1])
    raise AssertionError(f"none of {flags} in {command}")


def env_names_read_by(config: object) -> Iterator[str]:
    """Every `{env: NAME}` in a Dagster config tree."""
    if isinstance(config, dict):
        if set(config) == {"env"}:
            yield config["env"]
        for value in config.values():
            yield from env_names_read_by(value)
    elif isinstance(config, list):
        for value in config:
            yield from env_names_read_by(value)


# --- every file parses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [COMPOSE, INSTANCE, WORKSPACE, HELM], ids=lambda p: str(p.relative_to(DEPLOY))
)
def test_yaml_parses_to_a_mapping(path: Path) -> None:
    assert isinstance(_load(path), dict)


def test_compose_has_every_process_of_the_production_shape(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == set(PROJECT_SERVICES)
    assert "DockerRunLauncher" in INSTANCE.read_text()
    for name in SERVING_SERVICES:
        assert service_env(services[name])["LTR_SERVING_SOURCE"] == "s3"
    # Compose v1 (Debian's docker-compose) refuses a top-level name.
    assert "name" not in compose


def test_every_service_uses_the_host_network_and_has_a_health_check(
    compose: dict[str, Any], instance: dict[str, Any]
) -> None:
    for name, service in compose["services"].items():
        assert service["network_mode"] == "host", name
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert service["logging"]["driver"] == "json-file", name
        command = service["command"]
        if "--log-format" in command:
            assert command_flag(command, "--log-format") == "json", name
        for flag in ("-h", "--host"):
            if flag in command:
                assert command_flag(command, flag) == "127.0.0.1", name
    assert "networks" not in compose
    assert instance["run_launcher"]["config"]["network"] == "host"


# --- the Dagster instance and workspace validate against Dagster's schemas ----------------------


def test_compose_instance_validates(
    instance: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes.config_class import class_from_code_pointer

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text(INSTANCE.read_text())
    config, _ = dagster_instance_config(str(tmp_path))  # raises on a schema error
    assert "postgres" in config["storage"]
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    for section in ("run_launcher", "run_coordinator", "compute_logs"):
        data = instance[section]
        cls: Any = class_from_code_pointer(data["module"], data["class"])
        result = validate_config(cls.config_type(), data.get("config", {}))
        assert result.success, (section, result.errors)
    assert instance["run_launcher"]["class"] == "DockerRunLauncher"
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert instance["compute_logs"]["class"] == "S3ComputeLogManager"


def test_instance_reads_the_dagster_pg_variables(instance: dict[str, Any]) -> None:
    assert set(env_names_read_by(instance["storage"])) == {
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PORT",
        "DAGSTER_PG_USER",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_DB",
    }


def test_run_queue_and_retries_agree_with_the_other_instances(
    instance: dict[str, Any], helm: dict[str, Any]
) -> None:
    """The pipeline's tag and pool limits are the same everywhere (one run at a time), and
    the queue's limits live only in `concurrency` (Dagster refuses them in the run
    coordinator's config beside it); retries and monitoring agree with the Helm values and,
    where it exists, the Postgres instance (deploy/dagster-postgres.yaml)."""
    local = _load(ROOT / "dagster.yaml")
    concurrency = instance["concurrency"]
    assert concurrency["pools"] == {"granularity": "run", "default_limit": 1}
    assert local["concurrency"] == concurrency
    assert "run_queue" not in local and "config" not in instance["run_coordinator"]
    assert helm["concurrency"]["pools"] == {"granularity": "run", "defaultLimit": 1}
    runs = concurrency["runs"]
    assert runs["tag_concurrency_limits"] == [{"key": "ltr/pipeline", "limit": 1}]
    assert helm["concurrency"]["runs"] == {
        "maxConcurrentRuns": runs["max_concurrent_runs"],
        "tagConcurrencyLimits": runs["tag_concurrency_limits"],
    }
    daemon = helm["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert not any(queued.values()), "the chart would render both and Dagster refuse them"
    assert daemon["runRetries"] == {
        "enabled": instance["run_retries"]["enabled"],
        "maxRetries": instance["run_retries"]["max_retries"],
        "retryOnAssetOrOpFailure": instance["run_retries"]["retry_on_asset_or_op_failure"],
    }
    assert daemon["runMonitoring"]["enabled"] is instance["run_monitoring"]["enabled"] is True
    for other in sorted(DEPLOY.glob("dagster-postgres*.yaml")):  # the Postgres instance
        config = _load(other)
        for section in ("run_retries", "run_monitoring"):
            if section in config:
                assert config[section]["enabled"] == instance[section]["enabled"], other
        if "run_monitoring" in config:  # a hung run must not hold the pipeline slot anywhere
            limit = config["run_monitoring"].get("max_runtime_seconds")
            assert limit == instance["run_monitoring"]["max_runtime_seconds"], other
        if "run_retries" in config:
            assert (
                config["run_retries"].get("max_retries") == instance["run_retries"]["max_retries"]
            ), other
        assert config["concurrency"] == concurrency, other


def test_workspace_points_at_the_code_server(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.workspace.config_schema import ensure_workspace_config

    monkeypatch.setenv("LTR_CODE_SERVER_PORT", str(CODE_SERVER_PORT))
    workspace = _load(WORKSPACE)
    ensure_workspace_config(workspace, str(DEPLOY))  # raises on a schema error
    (entry,) = workspace["load_from"]
    server = entry["grpc_server"]
    assert server["host"] == "127.0.0.1" and "code-server" in compose["services"]
    assert server["port"] == {"env": "LTR_CODE_SERVER_PORT"}
    command = compose["services"]["code-server"]["command"]
    assert command[:3] == ["dagster", "code-server", "start"]
    assert int(command_flag(command, "-p", "--port")) == CODE_SERVER_PORT
    assert command_flag(command, "-m", "--module-name") == "ltr_assets.definitions"
    assert command_flag(command, "--location-name") == server["location_name"]
    for name in ("webserver", "daemon"):
        service = compose["services"][name]
        assert command_flag(service["command"], "-w", "--workspace") == (
            "/opt/dagster/app/workspace.yaml"
        )
        assert int(service_env(service)["LTR_CODE_SERVER_PORT"]) == CODE_SERVER_PORT
    assert "COPY deploy/workspace-compose.yaml /opt/dagster/app/workspace.yaml" in (
        DOCKERFILES["dagster"].read_text()
    )


# --- environment: documented, valid, and passed on to the run workers ---------------------------


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_every_variable_of_a_project_service_is_documented(
    compose: dict[str, Any], name: str
) -> None:
    env = service_env(compose["services"][name])
    assert env, name
    undocumented = sorted(key for key in env if not is_documented(key))
    assert not undocumented, f"{name}: not in the configuration reference: {undocumented}"


def test_every_variable_of_the_run_workers_and_helm_is_documented(
    instance: dict[str, Any], helm: dict[str, Any]
) -> None:
    launched = instance["run_launcher"]["config"]["env_vars"]
    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    names = [*launched, *(item["name"] for item in deployment["env"])]
    names += list(env_names_read_by(instance))
    undocumented = sorted({key for key in names if not is_documented(key)})
    assert not undocumented, undocumented


def test_run_workers_get_what_the_daemon_has(
    compose: dict[str, Any], instance: dict[str, Any]
) -> None:
    """The DockerRunLauncher copies env_vars from the process that launches the run (the daemon,
    or the webserver from the UI), so each must be set there; and a run worker needs everything
    the code server was given, or a run would see another configuration than the UI."""
    launched = set(instance["run_launcher"]["config"]["env_vars"])
    for name in ("daemon", "webserver"):
        missing = launched - set(service_env(compose["services"][name]))
        assert not missing, (name, sorted(missing))
    code_server = set(service_env(compose["services"]["code-server"])) - DAGSTER_OWN
    assert code_server == launched, sorted(code_server ^ launched)
    assert set(service_env(compose["services"]["daemon"])) - launched == {"LTR_CODE_SERVER_PORT"}


def test_compose_defaults_are_the_schema_defaults() -> None:
    """A `${NAME:-default}` of a setting in the compose file is the settings schema's default
    (or, for the few the deployment sets on purpose, documented as such)."""
    text = COMPOSE.read_text()
    defaults = dict(re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", text))
    schema = Settings.from_env({})
    deployment_choices = {
        "LTR_DATA_DIR", "LTR_START_DATE", "LTR_TRAIN_WINDOW_DAYS", "KAFKA_BOOTSTRAP_SERVERS",
        "S3_BUCKET", "S3_ENDPOINT", "NOTIFY_WEBHOOK_URL", "WEIGHTS_POLL_SECONDS",
    }  # fmt: skip
    gate = {
        "LTR_NDCG_MIN": schema.gate.ndcg_min,
        "LTR_FAIRNESS_MAX": schema.gate.fairness_max,
        "LTR_LATENCY_P95_MS": schema.gate.latency_p95_ms,
        "LTR_MIN_SAMPLES": schema.gate.min_samples,
        "LTR_REGRESSION_MARGIN": schema.gate.regression_margin,
    }
    for name, value in gate.items():
        assert float(defaults[name]) == float(value), name
    assert defaults["KAFKA_TOPIC"] == KafkaSettings.model_fields["topic"].default
    assert defaults["KAFKA_GROUP_ID"] == KafkaSettings.model_fields["group_id"].default
    assert defaults["S3_PREFIX"] == S3Settings.model_fields["prefix"].default
    for name, port in PORT_VARIABLES.items():
        assert int(defaults[name]) == port, name
    assert deployment_choices <= set(defaults)


@pytest.mark.parametrize("name", DAGSTER_SERVICES)
def test_dagster_service_environment_parses(compose: dict[str, Any], name: str) -> None:
    env = service_env(compose["services"][name])
    settings = Settings.from_env(env)
    assert settings.s3.bucket == "ltr-models"
    assert env["LTR_DATA_DIR"].startswith("s3://"), "runs in separate containers share the lake"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    assert env["S3_ENDPOINT"] == "http://127.0.0.1:9000"
    assert env["LTR_SERVING_URL"] == f"http://127.0.0.1:{SERVING_PORT}"
    assert env["DAGSTER_PG_HOST"] == "127.0.0.1"
    assert env["DAGSTER_PG_PORT"] == "5432"


@pytest.mark.parametrize("name", SERVING_SERVICES)
def test_serving_environment_parses(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    settings = Settings.from_env(service_env(service))
    assert settings.serving_store == "s3"
    assert settings.serving.reload_enabled and settings.serving.feedback_enabled
    assert 0 < settings.serving.poll_seconds <= 60, "every replica polls S3"
    # What it serves reaches raw_events: the topic the pipeline reads, and spill files on the
    # volume the run containers mount at the same LTR_HOME.
    assert settings.serving.impression_log == "kafka"
    dagster = Settings.from_env(service_env(compose["services"]["code-server"]))
    assert settings.kafka == dagster.kafka
    assert service["volumes"] == ["ltr-state:/var/lib/ltr"]
    assert settings.serving_log_dir.is_relative_to(service_env(service)["LTR_HOME"])
    assert settings.serving_log_dir == dagster.serving_log_dir


# --- ports, images, network, volume -------------------------------------------------------------


def test_ports_agree(compose: dict[str, Any]) -> None:
    services = compose["services"]
    web = services["webserver"]
    assert int(command_flag(web["command"], "-p", "--port")) == WEBSERVER_PORT
    ports = {int(command_flag(services[name]["command"], "--port")) for name in SERVING_SERVICES}
    assert ports == {SERVING_PORT, SERVING_PORT + 1}, "one port per replica on the host"
    for name in SERVING_SERVICES:
        service = services[name]
        port = command_flag(service["command"], "--port")
        assert f"127.0.0.1:{port}/ltr/health" in interpolate(service["healthcheck"]["test"])
    code = services["code-server"]
    # python -m ltr_assets.defs.code_server_health PORT: the port the code server listens on
    health = code["healthcheck"]["test"]
    assert health[1:4] == ["python", "-m", "ltr_assets.defs.code_server_health"]
    assert interpolate(health[4]) == command_flag(code["command"], "-p")
    assert f"127.0.0.1:{WEBSERVER_PORT}/server_info" in interpolate(web["healthcheck"]["test"])
    serving_file = DOCKERFILES["serving"].read_text()
    assert f"EXPOSE {SERVING_PORT}" in serving_file
    assert f"127.0.0.1:{SERVING_PORT}/ltr/health" in serving_file
    assert f'"--port", "{SERVING_PORT}"' in serving_file
    dagster_file = DOCKERFILES["dagster"].read_text()
    assert f"EXPOSE {CODE_SERVER_PORT}" in dagster_file
    assert f'"-p", "{CODE_SERVER_PORT}", "-m", "ltr_assets.definitions"' in dagster_file
    (deployment,) = _load(HELM)["dagster-user-deployments"]["deployments"]
    assert deployment["port"] == CODE_SERVER_PORT


def test_run_containers_join_the_network_and_volume(
    compose: dict[str, Any], instance: dict[str, Any]
) -> None:
    launcher = instance["run_launcher"]["config"]
    # run containers' logs rotate as the services' do
    logging = compose["services"]["daemon"]["logging"]
    log_config = launcher["container_kwargs"]["log_config"]
    assert (log_config["type"], log_config["config"]) == (logging["driver"], logging["options"])
    for mount in launcher["container_kwargs"]["volumes"]:
        volume, path = mount.split(":")[:2]
        assert compose["volumes"][volume]["name"] == volume
        assert path == service_env(compose["services"]["daemon"])["LTR_HOME"]
    code_server = compose["services"]["code-server"]
    assert service_env(code_server)["DAGSTER_CURRENT_IMAGE"] == interpolate(code_server["image"])
    for name in DAGSTER_SERVICES:
        assert compose["services"][name]["build"]["dockerfile"] == "deploy/Dockerfile.dagster"
    for name in SERVING_SERVICES:
        assert compose["services"][name]["build"]["dockerfile"] == "deploy/Dockerfile.serving"


# --- the images install from the lock file ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_installs_from_the_lock(name: str) -> None:
    text = DOCKERFILES[name].read_text()
    assert len(re.findall(r"^FROM ", text, flags=re.M)) >= 2, "multi-stage"
    assert re.search(r"^COPY pyproject\.toml uv\.lock ", text, flags=re.M)
    syncs = _syncs(name)
    assert len(syncs) == 2 and all("--locked" in s and "--no-dev" in s for s in syncs), syncs
    assert "pip install" not in text.replace("pip install --no-cache-dir uv==", "")
    # The CA bundle reaches the build as a BuildKit secret, never as a file of the context.
    assert text.count("--mount=type=secret,id=ca") == 3
    assert re.search(r"^ARG PYTHON_IMAGE=ltr-python:3.11-bookworm$", text, flags=re.M)
    assert "syntax=" not in text, "no frontend image to pull: the engine's built-in one"
    uv_version = re.search(r"^UV_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert uv_version and f"uv=={uv_version.group(1)}" in text
    assert "libgomp1" in text, "LightGBM's OpenMP runtime"
    # The dependencies' layer from the stage that has only them; the project's files on top.
    assert "COPY --from=deps /opt/venv /opt/venv\nCOPY --from=build /opt/project/ /" in text


def _syncs(name: str) -> list[str]:
    return re.findall(
        r"^ +SSL_CERT_FILE=/run/secrets/ca (?:UV_COMPILE_BYTECODE=0 )?(uv sync [^\n]*)",
        DOCKERFILES[name].read_text(),
        flags=re.M,
    )


def _copied_packages(name: str) -> set[str]:
    return set(re.findall(r"^COPY (ltr_\w+) ", DOCKERFILES[name].read_text(), flags=re.M))


def test_dagster_image_has_the_pipeline_and_deploy_extras_and_the_lock_has_them() -> None:
    text = DOCKERFILES["dagster"].read_text()
    assert all("--extra pipeline --extra deploy" in s for s in _syncs("dagster"))
    assert _copied_packages("dagster") == {"ltr_core", "ltr_assets", "ltr_serving"}
    assert "COPY deploy/dagster-compose.yaml /opt/dagster/dagster_home/dagster.yaml" in text
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    aws = next(d for d in extras["pipeline"] if d.startswith("dagster-aws=="))
    integration_version = aws.split("==")[1]
    # dagster-postgres is the pipeline's (the deployed-shape test runs on it), the launchers are
    # the image's extra.
    installed = extras["deploy"] + extras["pipeline"]
    for package in ("dagster-postgres", "dagster-docker", "dagster-k8s"):
        assert f"{package}=={integration_version}" in installed
    locked = {
        p["name"]: p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]
    }
    for package in ("dagster-postgres", "dagster-docker", "dagster-k8s"):
        assert locked[package] == integration_version


def test_serving_image_installs_the_base_alone(compose: dict[str, Any]) -> None:
    """No extra (the pipeline's Dagster, DuckDB, pandas are there), no pipeline package, and
    the service's own command (`ltr serve` is the pipeline's command line: it needs the pipeline
    extra). tests/deploy/test_serving_install.py builds this install and runs serving on it."""
    syncs = _syncs("serving")
    assert syncs and not any("--extra" in s or "--all-extras" in s for s in syncs), syncs
    assert _copied_packages("serving") == {"ltr_core", "ltr_serving"}
    text = DOCKERFILES["serving"].read_text()
    assert re.search(r'^CMD \["ltr-serve", ', text, flags=re.M)
    with K8S_SERVING.open() as f:
        (container,) = next(d for d in yaml.safe_load_all(f) if d["kind"] == "Deployment")["spec"][
            "template"
        ]["spec"]["containers"]
    commands = [compose["services"][name]["command"] for name in SERVING_SERVICES]
    for command in (*commands, container["command"]):
        assert command[0] == "ltr-serve", command
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ltr-serve"] == "ltr_serving.server:main"


# --- Helm ---------------------------------------------------------------------------------------


def test_helm_values(helm: dict[str, Any]) -> None:
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
    assert helm["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert helm["generatePostgresqlPasswordSecret"] is False
    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    assert deployment["codeServerArgs"] == ["--module-name", "ltr_assets.definitions"]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert deployment["image"]["tag"] != "latest"
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["LTR_DATA_DIR"].startswith("s3://")
    # Secrets only from Kubernetes Secrets, never as plain values.
    for secret in ("AWS_SECRET_ACCESS_KEY", "LTR_RELOAD_TOKEN", "DAGSTER_PG_PASSWORD"):
        assert secret not in env
    assert {"name": "ltr-secrets"} in deployment["envSecrets"]
    Settings.from_env(env)


def test_the_deployment_doc_names_every_file_and_what_is_only_parsed() -> None:
    section = (ROOT / "docs" / "deployment.md").read_text()
    for path in (COMPOSE, INSTANCE, WORKSPACE, HELM, K8S_SERVING, *DOCKERFILES.values()):
        assert str(path.relative_to(ROOT)) in section, path
    assert "make deploy-up" in section and "make deploy-down" in section
    assert "parsed and cross-checked only" in section


# --- the ranking service on Kubernetes -----------------------------------------------------------

K8S_SERVING = DEPLOY / "k8s" / "serving.yaml"


def test_k8s_serving_manifest(helm: dict[str, Any]) -> None:
    with K8S_SERVING.open() as f:
        documents = {doc["kind"]: doc for doc in yaml.safe_load_all(f)}
    assert set(documents) == {"Deployment", "Service", "PodDisruptionBudget"}
    deployment = documents["Deployment"]
    assert deployment["spec"]["replicas"] >= 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert int(command_flag(container["command"], "--port")) == SERVING_PORT
    assert container["ports"] == [{"name": "http", "containerPort": SERVING_PORT}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ltr/health"
    env = {item["name"]: item["value"] for item in container["env"]}
    undocumented = sorted(key for key in env if not is_documented(key))
    assert not undocumented, undocumented
    assert {"secretRef": {"name": "ltr-secrets"}} in container["envFrom"]
    secrets = {"LTR_RELOAD_TOKEN": "from-the-secret", "LTR_FEEDBACK_TOKEN": "from-the-secret"}
    settings = Settings.from_env({**env, **secrets})
    assert settings.serving_store == "s3" and 0 < settings.serving.poll_seconds <= 60
    # What it serves reaches raw_events: the code location's topic, spills on the runs' volume.
    (code_location,) = helm["dagster-user-deployments"]["deployments"]
    location_env = {item["name"]: item["value"] for item in code_location["env"]}
    assert settings.serving.impression_log == "kafka"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == location_env["KAFKA_BOOTSTRAP_SERVERS"]
    assert env["KAFKA_TOPIC"] == location_env["KAFKA_TOPIC"]
    assert container["volumeMounts"] == code_location["volumeMounts"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in volumes] == ["ltr-state"]
    # The Service is what the reload sensor calls (the code location's LTR_SERVING_URL).
    service = documents["Service"]
    assert service["metadata"]["name"] == deployment["metadata"]["name"]
    assert service["spec"]["ports"][0]["port"] == SERVING_PORT
    url = {item["name"]: item["value"] for item in code_location["env"]}["LTR_SERVING_URL"]
    assert url.startswith(f"http://{service['metadata']['name']}.")
    assert url.endswith(f":{SERVING_PORT}")


def test_deploy_env_reaches_signing_rollout_and_environment(
    compose: dict[str, Any], instance: dict[str, Any]
) -> None:
    """What docs/deployment.md says to set in deploy/.env reaches the processes that read it:
    the signing key only where versions are published (code server, run workers), the verify
    keys there and on the replicas; production by default."""
    raw = {name: compose["services"][name].get("environment") or {} for name in PROJECT_SERVICES}
    launched = set(instance["run_launcher"]["config"]["env_vars"])
    publishing = {"LTR_ARTIFACT_SIGNING_KEY", "LTR_ARTIFACT_VERIFY_KEYS", "LTR_ROLLOUT"}
    assert {*publishing, "LTR_ENVIRONMENT"} <= launched  # the run workers publish
    for name in (*DAGSTER_SERVICES, *SERVING_SERVICES):
        env = raw[name]
        assert env["LTR_ENVIRONMENT"] == "${LTR_ENVIRONMENT:-production}", name
        assert env["LTR_ARTIFACT_VERIFY_KEYS"] == "${LTR_ARTIFACT_VERIFY_KEYS:-}", name
        if name in SERVING_SERVICES:
            assert "LTR_ARTIFACT_SIGNING_KEY" not in env, name  # a replica never signs
        else:
            assert env["LTR_ARTIFACT_SIGNING_KEY"] == "${LTR_ARTIFACT_SIGNING_KEY:-}", name
            assert env["LTR_ROLLOUT"] == "${LTR_ROLLOUT:-}", name
