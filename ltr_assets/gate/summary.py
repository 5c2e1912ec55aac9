"""The candidate summary: what ltr_model[D] found about its candidate, typed.

It is written once as `candidates/D/candidate.json` and read back by published_weights (which
publishes it as the version's metadata.json, with the registry's own fields beside it), by the
model card and by the demo. `to_json` and `from_json` are the one boundary between the typed
summary and that file: every reader uses attributes, so mypy checks each of them, and
`from_json` validates the closed sets (scorer, debias method, propensity method, baseline
status) when the file is read back. The JSON shape is the published metadata's and stays as it
was: the nDCG tables are keyed `ndcg@k` there, by `k` here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from functools import cache
from typing import Annotated, Any

from pydantic import BeforeValidator, TypeAdapter

from ltr_assets.gate.evaluation import Evaluation, GateResult, RequestLatency
from ltr_assets.metrics.ranking import CounterfactualReport, NdcgReport, PairedReport
from ltr_core.settings import GateThresholds
from ltr_core.vocabulary import (
    BaselineStatus,
    CurveSource,
    DebiasMethod,
    PropensityMethod,
    ScorerName,
)


def _k_of(name: str) -> int:
    """`ndcg@5` -> 5 (the JSON key of a table entry)."""
    prefix, _, k = name.partition("@")
    if prefix != "ndcg" or not k.isdigit():
        raise ValueError(f"an nDCG table key is ndcg@<k>, got {name!r}")
    return int(k)


def _keyed_by_k(value: Any) -> Any:
    if isinstance(value, dict):
        return {_k_of(name) if isinstance(name, str) else name: v for name, v in value.items()}
    return value


def _keyed_json(table: dict[int, Any]) -> dict[str, Any]:
    return {f"ndcg@{k}": asdict(report) for k, report in table.items()}


CounterfactualTable = Annotated[dict[int, CounterfactualReport], BeforeValidator(_keyed_by_k)]
NdcgTable = Annotated[dict[int, NdcgReport], BeforeValidator(_keyed_by_k)]


@dataclass(frozen=True)
class SplitCounts:
    train: int
    valid: int
    test: int

    @property
    def total(self) -> int:
        return self.train + self.valid + self.test


@dataclass(frozen=True)
class TrainingWindow:
    days: int  # LTR_TRAIN_WINDOW_DAYS
    present: tuple[date, ...]
    missing: tuple[date, ...]
    groups: SplitCounts  # lists per split
    rows: SplitCounts
    # list ids found on more than one day, each day's part kept as a list of its own
    ids_on_several_days: int = 0


@dataclass(frozen=True)
class DebiasInfo:
    """How the training targets were corrected for position bias."""

    method: DebiasMethod
    propensity_clip: float
    evaluation_ips_max_weight: float
    label_gain: list[float] | None
    ips_weights: bool
    lightgbm_position: bool


@dataclass(frozen=True)
class SamplingRecord:
    """What a step of training capped by LTR_*_MAX_ROWS fitted on."""

    max_rows: int
    rows_available: int
    lists_available: int
    sampled: bool
    seed: int
    rows_used: int
    lists_used: int


@dataclass(frozen=True)
class PropensitySummary:
    """The examination curve θ_k by position, relative to position 1, with its 95% band (None
    where an intervention estimate could not be bounded), where each position's θ comes from
    and the swapped impressions that reached it (`ltr_assets.learning.propensity`). Versions
    published before the sources were recorded, and pinned curves, have none (empty lists)."""

    method: PropensityMethod
    examination: list[float]
    low: list[float | None]
    high: list[float | None]
    impressions: list[int]
    clicks: list[int]
    params: dict[str, Any]
    sources: list[CurveSource] = field(default_factory=list)
    swapped_impressions: list[int] = field(default_factory=list)

    @property
    def interventions_used(self) -> bool:
        return "interventions" in self.sources


@dataclass(frozen=True)
class BaselineSummary:
    """The version the candidate was compared with, as the gate found it."""

    version: str  # "" when none is published
    status: BaselineStatus
    label: str  # "live", or "baseline (published for D or before)"; "" when none
    error: str
    paired_ndcg_at_5: PairedReport | None  # candidate − baseline on the test lists
    weights: dict[str, float] | None

    @property
    def name(self) -> str:
        """What the baseline is to an operator: `live 2026…`, or that none is published."""
        if not self.version:
            return "none published"
        return f"{self.label or 'live'} {self.version}"

    def compared_with(self, partition: str) -> str:
        """`name`, saying for which days none was published: in a backfill, later versions
        may exist (none of them is a fair yardstick for an earlier day)."""
        return self.name if self.version else f"none published for {partition} or before"


@dataclass(frozen=True)
class Comparison:
    """Counterfactual nDCG@k of the candidate, the baseline (None: no usable baseline) and the
    platform's logged order on the same test lists, judged by the same evaluator."""

    candidate: CounterfactualTable
    baseline: CounterfactualTable | None
    logged_order: CounterfactualTable


@dataclass(frozen=True)
class Metrics:
    """The evaluation of the candidate (`Evaluation`) as recorded."""

    scorer: ScorerName
    counterfactual: CounterfactualTable
    model_based: CounterfactualTable
    logged_ndcg: NdcgTable
    vs_logged: PairedReport
    fairness: dict[str, Any]  # FairnessReport as recorded (the model card shows fairness_table)
    latency: RequestLatency
    samples: int
    test_groups: int

    @classmethod
    def of(cls, evaluation: Evaluation) -> Metrics:
        return cls(
            scorer=evaluation.scorer,
            counterfactual=dict(evaluation.counterfactual),
            model_based=dict(evaluation.model_based),
            logged_ndcg=dict(evaluation.logged_ndcg),
            vs_logged=evaluation.vs_logged,
            fairness=asdict(evaluation.fairness),
            latency=evaluation.latency,
            samples=evaluation.samples,
            test_groups=evaluation.test_groups,
        )


@dataclass(frozen=True)
class CandidateSummary:
    partition: date
    scorer: ScorerName
    training_window: TrainingWindow
    params: dict[str, Any]  # LightGBM's
    best_iteration: int
    debias: DebiasInfo
    # what the steps fitted on a sample used (LTR_CLICK_MODEL_MAX_ROWS, LTR_WEIGHTS_MAX_ROWS)
    sampling: dict[str, SamplingRecord]
    propensity: PropensitySummary
    weights_method: str
    weights_validation_ndcg_at_5: dict[str, float]
    model_validation_ndcg_at_5: float
    baseline: BaselineSummary
    comparison: Comparison  # the model card's comparison
    weights: dict[str, float]
    metrics: Metrics
    gate: tuple[GateResult, ...]
    warnings: tuple[GateResult, ...]  # non-blocking checks (fairness_coverage)
    fairness_table: str
    gate_passed: bool
    thresholds: GateThresholds
    code_version: str

    def to_json(self) -> dict[str, Any]:
        """The summary as candidate.json holds it (and a published version's metadata.json)."""
        out = asdict(self)
        out["partition"] = self.partition.isoformat()
        window = out["training_window"]
        window["present"] = [d.isoformat() for d in self.training_window.present]
        window["missing"] = [d.isoformat() for d in self.training_window.missing]
        comparison = self.comparison
        out["comparison"] = {
            "candidate": _keyed_json(comparison.candidate),
            "baseline": None if comparison.baseline is None else _keyed_json(comparison.baseline),
            "logged_order": _keyed_json(comparison.logged_order),
        }
        metrics = out["metrics"]
        for table in ("counterfactual", "model_based", "logged_ndcg"):
            metrics[table] = _keyed_json(getattr(self.metrics, table))
        out["gate"] = [asdict(result) for result in self.gate]
        out["warnings"] = [asdict(result) for result in self.warnings]
        out["thresholds"] = self.thresholds.model_dump()
        return out

    @classmethod
    def from_json(cls, data: Any) -> CandidateSummary:
        """The summary in `data` (parsed candidate.json or metadata.json: fields of the registry
        beside it are ignored); pydantic's ValidationError when it does not hold one."""
        return _adapter().validate_python(data)


@cache
def _adapter() -> TypeAdapter[CandidateSummary]:
    return TypeAdapter(CandidateSummary)


def sampling_records(data: Any) -> dict[str, SamplingRecord]:
    """Training's record of its samples (`TrainedRanker.info["sampling"]`), validated."""
    return TypeAdapter(dict[str, SamplingRecord]).validate_python(data)


def debias_info(data: Any) -> DebiasInfo:
    """Training's record of its debiasing (`TrainedRanker.info["debias"]`), validated."""
    return TypeAdapter(DebiasInfo).validate_python(data)


def propensity_summary(data: Any) -> PropensitySummary:
    """A fitted or pinned propensity curve (`PropensityCurve.to_dict()`), validated."""
    return TypeAdapter(PropensitySummary).validate_python(data)
