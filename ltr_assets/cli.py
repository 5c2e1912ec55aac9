"""`ltr`: the command line (simulate events, inspect and roll back the registry, run a night by
hand, run the demo)."""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltr_assets.gate.versions import dangling_pointers, list_versions, versions_text
from ltr_assets.registry.local import LocalRegistry
from ltr_assets.simulation.simulator import (
    ENVELOPES,
    PLATFORM_VERSION,
    ClickModel,
    Simulator,
    SimulatorConfig,
    parse_bias_target,
    render_lines,
)
from ltr_core.artifacts.format import (
    InvalidVersion,
    RegistryError,
    check_servable,
    check_version,
    parse_json,
)
from ltr_core.artifacts.signing import signature_state
from ltr_core.scoring import make_scorer
from ltr_core.settings import ConfigError, Settings, bearer_tokens

if TYPE_CHECKING:
    from ltr_assets.defs.launch import NightReport
    from ltr_assets.registry.s3_mirror import S3Mirror


MAX_SIMULATED_DAYS = 366  # a year: the simulator holds every event in memory


def _day_argument(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day YYYY-MM-DD") from None


def _count_argument(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in [{low:,}, {high:,}]")
        return value

    return parse


def _non_negative_argument(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value


def _bias_argument(text: str) -> str:
    try:
        parse_bias_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _simulate(args: argparse.Namespace) -> int:
    config = SimulatorConfig(
        start=args.start,
        days=args.days,
        seed=args.seed,
        requests_per_day=args.requests_per_day,
        bias_against=args.bias_against,
        bias_strength=args.bias_strength,
        click_model=ClickModel(position_bias=args.position_bias),
    )
    simulator = Simulator(config)
    ranker, version = None, PLATFORM_VERSION
    if args.shown_by == "live":
        settings = Settings.from_env()
        registry = _registry(settings)
        version = registry.latest_version() or ""
        if not version:
            print("error: --shown-by live needs a published version", file=sys.stderr)
            return 2
        artifact = registry.load(version)
        ranker = make_scorer(settings.scorer, artifact.weights, artifact.model_text).score
    events = []
    for day in simulator.days():
        events.extend(simulator.day_events(day, ranker, version))
    events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    if args.to == "kafka":
        return _simulate_to_kafka(events, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = render_lines(events, args.envelope, args.seed)
    if out.exists() and not out.is_file():  # a pipe, a terminal, /dev/stdout: written to
        with out.open("w") as handle:
            handle.writelines(line + "\n" for line in lines)
    else:  # a file (through its links): written beside it and renamed, so a failed write (a
        # full disk) never leaves a cut file under a name an audit-log glob reads, nor
        # destroys the file it replaces
        target = out.resolve()
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            with partial.open("w") as handle:
                handle.writelines(line + "\n" for line in lines)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    print(f"wrote {len(events)} events ({args.envelope} envelope) for {args.days} days to {out}")
    return 0


def _simulate_to_kafka(events: list[dict[str, Any]], args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from ltr_assets.ingest.kafka import ensure_topic, publish_events
    from ltr_assets.simulation.simulator import to_audit_line

    kafka = Settings.from_env().kafka
    if kafka is None:
        print("error: --to kafka needs KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    if args.envelope == "audit":
        import numpy as np

        rng = np.random.default_rng([args.seed, 2])
        events = [to_audit_line(event, rng) for event in events]
    try:
        created = ensure_topic(kafka, partitions=args.partitions)
        sent = publish_events(kafka, events)
    except (KafkaError, OSError, TimeoutError) as exc:  # the broker down or refusing
        why = (
            str(exc) if str(exc).startswith(type(exc).__name__) else f"{type(exc).__name__}: {exc}"
        )
        print(
            f"error: publishing to {kafka.topic} at {kafka.bootstrap_servers} failed: {why}",
            file=sys.stderr,
        )
        return 1
    print(
        f"published {sent} events ({args.envelope} envelope) for {args.days} days to "
        f"{kafka.topic}{' (created)' if created else ''}"
    )
    return 0


def version_argument(text: str) -> str:
    """argparse type: a version id, or a usage error (exit code 2) saying what one looks like."""
    try:
        return check_version(text)
    except InvalidVersion as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _registry(settings: Settings) -> LocalRegistry:
    return LocalRegistry(settings.registry_dir, settings.weights_path, settings.artifact_keys)


def _registry_list(args: argparse.Namespace) -> int:
    registry = _registry(Settings.from_env())
    rows, warnings = list_versions(registry)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for line in versions_text(rows):
        print(line)
    if not any(row.role == "live" for row in rows):
        print("(no latest version)")
    if any(row.role == "candidate" for row in rows):
        print("(c: the canary candidate; `ltr registry promote` or `retire` it)")
    return 0


def _registry_show(args: argparse.Namespace) -> int:
    registry = _registry(Settings.from_env())
    if args.version and (args.pointers or args.candidate):
        flag = "--pointers" if args.pointers else "--candidate"
        print(f"error: name a VERSION or give {flag}, not both", file=sys.stderr)
        return 2
    if args.pointers:
        shown: dict[str, Any] = {}
        for name, read in (("latest", registry.pointer), ("candidate", registry.candidate)):
            try:
                shown[name] = read()
            except RegistryError as exc:
                shown[name] = {"error": str(exc)}
        shown["history"] = registry.history()[-10:]
        print(json.dumps(shown, indent=2))
        return 0
    if args.candidate:
        version = registry.candidate_version()
        if version is None:
            print("error: there is no candidate", file=sys.stderr)
            return 1
        print(json.dumps(registry.metadata(version), indent=2))
        return 0
    version = args.version or registry.latest_version()
    if version is None:
        print("error: no version published yet", file=sys.stderr)
        return 1
    print(json.dumps(registry.metadata(version), indent=2))
    return 0


def _registry_verify(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    registry = _registry(settings)
    if args.repair:
        removed = registry.repair()
        for path in removed:
            print(f"removed leftover: {path}")
        print(f"repair: removed {len(removed)} leftover(s) of killed writers")
    versions = [args.version] if args.version else registry.versions()
    bad = 0
    named: dict[str, str | None] = {}
    for name, read in (
        ("latest", registry.latest_version),
        ("candidate", registry.candidate_version),
    ):
        try:
            named[name] = read()
        except RegistryError as exc:
            print(f"{name}: {exc}")
            bad += 1
    half_promoted = registry.interrupted_promotion()
    if half_promoted is not None:
        print(
            f"candidate: candidate.json still names {half_promoted}, which latest.json names "
            "too: a promotion a killed process stopped half-way (it is live; `ltr registry "
            "verify --repair`, or the next publish, finishes it)"
        )
        bad += 1
    for problem in dangling_pointers(registry, named.get("latest"), named.get("candidate")):
        print(problem)
        bad += 1
    present = set(registry.versions())
    for name, pointed in named.items():  # what serving checks beyond the files (LTR_SCORER)
        if pointed is None or pointed not in present:  # dangling: reported above
            continue
        try:
            check_servable(registry.metadata(pointed), settings.scorer)
        except RegistryError as exc:
            print(f"{name} {pointed}: serving (LTR_SCORER={settings.scorer}) refuses it: {exc}")
            bad += 1
    if not versions:
        print(f"no versions in {settings.registry_dir}: nothing to verify")
    for version in versions:
        problems = registry.verify(version)
        print(f"{version}: {'ok' if not problems else '; '.join(problems)}; "
              f"signature: {_signature(registry, version)}")  # fmt: skip
        bad += bool(problems)
    return 1 if bad else 0


def _signature(registry: LocalRegistry, version: str) -> str:
    """The version's signature state ("signed (key k1) ok", "unsigned", "bad signature ...",
    "not checked: no key ..."); whether it is required is the keys' business (verify)."""
    try:
        return signature_state(registry.metadata(version), registry.keys).text
    except RegistryError:
        return "unreadable metadata"


def _mirror(settings: Settings) -> S3Mirror | None:
    from ltr_assets.registry.s3_mirror import mirror_from_settings

    return mirror_from_settings(settings)


def _request_reload(settings: Settings, live: str, candidate: str | None) -> bool:
    """Ask the service to reload; False when it was asked and did not, or when it reloaded
    but does not serve `live` (and `candidate` as the canary, or none): a replica that reads
    S3 while the S3 pointers were not moved, say."""
    if not settings.serving.url:
        print("LTR_SERVING_URL not set: the ranking service's poller will pick it up")
        return True
    from ltr_assets.notify import request_reload

    tokens = bearer_tokens(settings.serving.reload_token)  # the first: the newest
    if not tokens:
        print(
            f"reload: FAILED LTR_RELOAD_TOKEN is not set, so {settings.serving.url} cannot be "
            "asked to reload: set it to the service's token, or let its poller pick it up"
        )
        return False
    delivery = request_reload(settings.serving.url, tokens[0])
    if not delivery.ok:
        print(f"reload: FAILED {delivery.error}")
        return False
    answer = delivery.answer if isinstance(delivery.answer, dict) else {}
    served = answer.get("version")
    state = answer.get("candidate_state")
    served_candidate = answer.get("candidate_version") if state == "loaded" else None
    if served != live or served_candidate != candidate:
        wanted = f"{live}" + (f" with candidate {candidate}" if candidate else "")
        got = f"{served}" + (f" with candidate {served_candidate}" if served_candidate else "")
        if candidate and state not in (None, "loaded", "none"):
            got += f" (candidate {state}: {answer.get('candidate_error')})"
        print(
            f"reload: FAILED the service serves {got}, not {wanted} (does it read another "
            "store, such as S3, whose pointers were not moved?)"
        )
        return False
    print("reload: ok")
    return True


def _registry_rollback(args: argparse.Namespace) -> int:
    from ltr_assets.registry.publication import rollback

    settings = Settings.from_env()
    registry = _registry(settings)
    report = rollback(registry, _mirror(settings), args.version, settings.scorer)
    print(f"latest: {report.local.previous_latest} -> {report.version}")
    if report.local.reason:
        print(report.local.reason)
    s3_moved = _s3_outcome(report.s3_published, report.s3_error, "--force")
    reloaded = _request_reload(settings, report.version, registry.candidate_version())
    return 0 if reloaded and s3_moved else 1


def _s3_outcome(published: bool | None, error: str | None, sync_option: str = "") -> bool:
    """Say so when the S3 pointers were not moved (replicas reading S3 still serve the old
    ones) and how to move them; False then."""
    if published is not False:
        return True
    command = "ltr registry sync" + (f" {sync_option}" if sync_option else "")
    print(
        f"error: S3 pointers not moved ({error}): replicas that read S3 still serve the old "
        f"versions; run `{command}` once S3 is reachable"
    )
    return False


def _evidence(args: argparse.Namespace) -> dict[str, Any]:
    """--evidence (a JSON object: the interleaving result) and --note, for the history."""
    evidence: dict[str, Any] = {}
    if args.evidence:
        try:
            parsed = parse_json(args.evidence)
        except ValueError as exc:
            raise SystemExit(f"error: --evidence is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise SystemExit("error: --evidence must be a JSON object")
        evidence.update(parsed)
    if args.note:
        evidence["note"] = args.note
    return evidence


def _registry_promote(args: argparse.Namespace) -> int:
    from ltr_assets.registry.publication import promote

    settings = Settings.from_env()
    try:
        report = promote(
            _registry(settings), _mirror(settings), _evidence(args), settings.scorer, args.expect
        )
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"latest: {report.local.previous_latest} -> {report.version} (candidate promoted)")
    s3_moved = _s3_outcome(report.s3_published, report.s3_error, "--force")
    reloaded = _request_reload(settings, report.version, None)
    return 0 if reloaded and s3_moved else 1


def _registry_retire(args: argparse.Namespace) -> int:
    from ltr_assets.registry.publication import retire

    settings = Settings.from_env()
    registry = _registry(settings)
    try:
        version, s3_ok, s3_error = retire(registry, _mirror(settings), _evidence(args), args.expect)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"candidate {version} retired; latest unchanged")
    s3_moved = _s3_outcome(s3_ok, s3_error)
    live = registry.latest_version()
    if live is None:
        print("no live version: nothing for serving to reload")
    reloaded = live is None or _request_reload(settings, live, None)
    return 0 if reloaded and s3_moved else 1


def _registry_sync(args: argparse.Namespace) -> int:
    from ltr_assets.registry.s3_mirror import sync

    settings = Settings.from_env()
    mirror = _mirror(settings)
    if mirror is None:
        print("error: S3_BUCKET is not set", file=sys.stderr)
        return 2
    from ltr_assets.registry.publication import S3_ERRORS

    registry = _registry(settings)
    if not registry.versions():  # S3 mirrors the local registry: it would clear its pointers
        print(
            f"error: the registry at LTR_REGISTRY_DIR={settings.registry_dir} holds no version: "
            "nothing to mirror, and S3's pointers were left alone (run this where the registry "
            "is, e.g. in the compose code-server container)",
            file=sys.stderr,
        )
        return 2
    uploaded: list[str] = []
    try:
        report = sync(registry, mirror, force_pointer=args.force, uploaded=uploaded)
    except S3_ERRORS as exc:
        done = f" (uploaded before it failed: {', '.join(uploaded)})" if uploaded else ""
        print(f"error: sync to {mirror.url()} failed: {exc}{done}", file=sys.stderr)
        return 1
    print(f"uploaded {len(report.uploaded)} version(s): {', '.join(report.uploaded) or '-'}")
    if report.repaired:
        print(
            f"repaired {len(report.repaired)} version(s) that S3 held otherwise than the local "
            f"registry: {', '.join(report.repaired)}"
        )
    for note in report.unverified:
        print(f"warning: {note}", file=sys.stderr)
    if report.pointer_version is not None and not report.pointer_refused:
        latest = mirror.url("latest.json")
        if report.pointer_moved:
            print(f"{latest} -> {report.pointer_version}")
        else:
            print(f"{latest} not moved to {report.pointer_version}: S3 latest is a newer "
                  "partition (--force moves it back)")  # fmt: skip
    print(f"{mirror.url('candidate.json')} -> {report.candidate_version or 'none'}")
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if report.problems else 0


def _port(text: str) -> int:
    """argparse type for --port (the service's own rule, imported only when serving)."""
    from ltr_serving.server import port_argument

    return port_argument(text)


def _serve(args: argparse.Namespace) -> int:
    from ltr_serving.server import serve

    return serve(host=args.host, port=args.port)


def _without_instance(command: str) -> bool:
    """`ltr demo` and `ltr night` record their runs in the Dagster instance in DAGSTER_HOME (so
    the UI shows them): without one, say how to make it rather than fail inside Dagster."""
    home = os.environ.get("DAGSTER_HOME", "")
    ours = Path(__file__).resolve().parents[1] / "dagster.yaml"  # the repository's
    if home and Path(home).is_dir():
        if not (Path(home) / "dagster.yaml").is_file():
            print(
                f"warning: DAGSTER_HOME={home!r} has no dagster.yaml, so Dagster's defaults "
                "apply: no run limits, and a daemon there starts every pipeline run at once "
                f"(not one at a time); copy {ours} there",
                file=sys.stderr,
            )
        return False
    where = f"DAGSTER_HOME={home!r} is not a directory" if home else "DAGSTER_HOME is not set"
    # the path itself, not "$LTR_HOME/dagster": pasted into a shell without LTR_HOME set,
    # that would be /dagster
    ltr_home = Settings.from_env().home.resolve()
    instance = shlex.quote(str(ltr_home / "dagster"))
    config = shlex.quote(str(ours))
    ltr = shlex.quote(str(Path(sys.executable).parent / "ltr"))
    print(
        f"ltr {command.split()[0]}: {where}. It records its runs in a Dagster instance there: "
        "`make demo` makes one ($LTR_HOME/dagster with the repository's dagster.yaml); by "
        f"hand: mkdir -p {instance} && cp {config} {instance}/ && "
        f"LTR_HOME={shlex.quote(str(ltr_home))} DAGSTER_HOME={instance} {ltr} {command}",
        file=sys.stderr,
    )
    return True


def _demo(args: argparse.Namespace) -> int:
    if _without_instance("demo"):
        return 2
    from ltr_assets.demo import run_demo

    return run_demo(days=args.days, seed=args.seed)


def _night(args: argparse.Namespace) -> int:
    """One night by hand, in the foreground: what the schedule launches (for operators without
    a daemon, or who want to watch it). The reload the sensors would request follows when the
    registry's pointers moved."""
    if _without_instance(f"night {args.day}"):
        return 2
    try:  # before the pipeline's definitions load (they read the settings too)
        settings = Settings.from_env()
    except ConfigError as exc:  # nothing ran: "could not start", not a failed run
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from ltr_assets.defs.launch import (
        InstanceUnavailable,
        NightInterrupted,
        NightRefused,
        run_night,
    )

    registry = _registry(settings)
    before = (registry.latest_version(), registry.candidate_version())
    again = f"re-run `ltr night {args.day.isoformat()}`"
    try:
        report = run_night(args.day.isoformat(), refresh=not args.no_refresh)
    except NightRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InstanceUnavailable as exc:
        where = f"DAGSTER_HOME={os.environ.get('DAGSTER_HOME', '')!r}"
        if exc.run is None:  # nothing ran
            print(
                f"error: the Dagster instance's database ({where}) failed: {exc}", file=sys.stderr
            )
            return 2
        if exc.left_unfinished:
            state = (
                "it may be left started, which holds back every later night: once the "
                "database is back, end it (in the UI, Terminate, then Force termination)"
            )
        else:
            state = "it was ended as canceled"
        print(
            f"failed: the Dagster instance's database ({where}) failed under {exc.run}: {exc}; "
            f"{state}, then {again}",
            file=sys.stderr,
        )
        return 1
    except NightInterrupted as exc:
        if exc.night is not None:  # the night finished; its label refresh was interrupted
            _night_done(exc.night, settings, registry, before)
            again = "the refresh sensor (or ltr_label_refresh_job in the UI) refreshes the rest"
        print(
            f"interrupted: {exc.run or 'between two runs'}; nothing was started after it: {again}",
            file=sys.stderr,
        )
        return 130
    except KeyboardInterrupt:
        print(f"interrupted before the night's run was created: {again}", file=sys.stderr)
        return 130
    return 0 if _night_done(report, settings, registry, before) else 1


def _night_done(
    report: NightReport,
    settings: Settings,
    registry: LocalRegistry,
    before: tuple[str | None, str | None],
) -> bool:
    """Say what the night did; ask serving to reload when the pointers moved: the local ones,
    or S3's (a sync catching up after an outage moves S3's alone, and replicas reading S3
    would wait for their poll). True when the night and its refreshes did their work and the
    reload, if asked for, happened."""
    outcome = report.outcome
    print(f"night {report.day}: {outcome.reason or outcome.outcome} (run {report.run_id})")
    for refresh in report.refreshes:
        state = "refreshed" if refresh.success else "FAILED"
        print(f"label refresh {refresh.day}: {state} (run {refresh.run_id})")
    live, candidate = registry.latest_version(), registry.candidate_version()
    reloaded = True
    if live is not None and (live, candidate) != before:
        reloaded = _request_reload(settings, live, candidate)
    elif live is not None and report.s3_pointers_changed:
        print(f"S3's {' and '.join(report.s3_pointers_changed)} moved (S3 caught up)")
        reloaded = _request_reload(settings, live, candidate)
    return report.ok and reloaded


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ltr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="write days of simulated platform events")
    sim.add_argument("--start", type=_day_argument, required=True, help="first day, YYYY-MM-DD")
    sim.add_argument(
        "--days", type=_count_argument(1, MAX_SIMULATED_DAYS), required=True, help="1 to 366"
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--out", help="JSONL file to write")
    sim.add_argument("--to", choices=["file", "kafka"], default="file")
    sim.add_argument("--envelope", choices=ENVELOPES, default="flat")
    sim.add_argument(
        "--partitions",
        type=_count_argument(1, 10_000),
        default=3,
        help="partitions if --to kafka creates the topic",
    )
    sim.add_argument("--requests-per-day", type=_count_argument(1, 1_000_000), default=400)
    sim.add_argument(
        "--bias-against",
        type=_bias_argument,
        help="clients' bias against a group, e.g. gender=F or gender=F&pcd=true",
    )
    sim.add_argument("--bias-strength", type=_non_negative_argument, default=1.0)
    sim.add_argument(
        "--position-bias",
        type=_non_negative_argument,
        default=ClickModel.position_bias,
        help="η in the examination curve θ_k = k^-η (0: every candidate is examined)",
    )
    sim.add_argument(
        "--shown-by",
        choices=["platform", "live"],
        default="platform",
        help="order the lists by the platform's v2.8 or by the registry's live version",
    )
    sim.set_defaults(func=_simulate)

    reg = sub.add_parser("registry", help="inspect, verify and roll back published versions")
    reg_sub = reg.add_subparsers(dest="action", required=True)
    reg_sub.add_parser(
        "list", help="every version, newest first (* live, c the candidate), with its gate"
    ).set_defaults(func=_registry_list)
    show = reg_sub.add_parser("show", help="a version's metadata (default: the live one's)")
    show.add_argument("version", nargs="?", type=version_argument)
    what = show.add_mutually_exclusive_group()
    what.add_argument("--candidate", action="store_true", help="the candidate's metadata")
    what.add_argument(
        "--pointers",
        action="store_true",
        help="latest.json, candidate.json and the candidate history instead of metadata",
    )
    show.set_defaults(func=_registry_show)
    verify = reg_sub.add_parser(
        "verify", help="check every version (or one) and the pointers as serving would"
    )
    verify.add_argument("version", nargs="?", type=version_argument)
    verify.add_argument(
        "--repair",
        action="store_true",
        help="first remove what killed publishes left (temporary files, half-deleted versions)",
    )
    verify.set_defaults(func=_registry_verify)
    rollback = reg_sub.add_parser(
        "rollback", help="point latest at a published version and ask serving to reload"
    )
    rollback.add_argument("version", type=version_argument)
    rollback.set_defaults(func=_registry_rollback)
    for name, func, text in (
        ("promote", _registry_promote, "move latest to the canary candidate and clear it"),
        ("retire", _registry_retire, "clear the canary candidate; latest stays"),
    ):
        action = reg_sub.add_parser(name, help=text)
        action.add_argument("--evidence", help="a JSON object recorded with it (the comparison)")
        action.add_argument("--note", help="a note recorded with it (who decided, why)")
        action.add_argument(
            "--expect",
            type=version_argument,
            metavar="VERSION",
            help="only if the candidate is still VERSION (the one whose evidence you read; a "
            "nightly publication may have replaced it since)",
        )
        action.set_defaults(func=func)
    sync_parser = reg_sub.add_parser(
        "sync", help="upload to S3 what it lacks or holds damaged; align its pointers"
    )
    sync_parser.add_argument("--force", action="store_true", help="move S3 latest even backwards")
    sync_parser.set_defaults(func=_registry_sync)

    serve = sub.add_parser("serve", help="run the ranking service (ltr_serving.app:app)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    serve.set_defaults(func=_serve)

    demo = sub.add_parser("demo", help="simulate, run the pipeline, print a report")
    demo.add_argument(
        "--days", type=_count_argument(1, MAX_SIMULATED_DAYS), default=28, help="1 to 366"
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_demo)

    night = sub.add_parser(
        "night",
        help="run one night of the pipeline now, in the foreground, as the schedule would",
        description="Runs ltr_daily_job for DAY in this process on the Dagster instance in "
        "DAGSTER_HOME (the UI lists the run, tagged with its outcome), then the label refresh "
        "of the days whose matrix is older than their raw events (the day before DAY), and "
        "asks LTR_SERVING_URL to reload when the live version or the candidate moved. Refused "
        "while another pipeline run is queued or in progress. Exit status: 0 published or "
        "refused by the gate; 1 a run failed (or the reload); 2 it could not start (a bad "
        "setting, a day that is no partition, another pipeline run unfinished); 130 "
        "interrupted.",
    )
    night.add_argument("day", type=_day_argument, help="the partition, YYYY-MM-DD")
    night.add_argument(
        "--no-refresh", action="store_true", help="skip the label refresh after the night"
    )
    night.set_defaults(func=_night)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "simulate" and args.to == "file" and not args.out:
        parser.error("simulate needs --out FILE")
    if args.command == "simulate" and args.to == "file" and Path(args.out).is_dir():
        parser.error(f"--out {args.out} is a directory: name a file")
    if args.command == "simulate" and args.days > (date.max - args.start).days:
        # the last day's feedback may land the next day
        parser.error(f"--start {args.start} with --days {args.days} runs past 9999-12-30")
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except BrokenPipeError:
        # the reader went away (`ltr registry show | head`): not an error of ours to report,
        # and the interpreter's final flush must not raise it again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (RegistryError, ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
