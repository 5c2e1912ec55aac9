"""feature_matrix: join a day's impressions with their feedback into graded, query-grouped rows.

A query group is one recommendation list (request_id; without one, case_id and the UTC day;
`group_id` is the JSON array of that key, see `_GROUP_ID`). Each (group,
lawyer) gets the strongest feedback matched to it: by request_id when the feedback has one and an
impression has it too, else by (case_id, lawyer_id) to the latest impression before it (for
feedback that names a request, only among impressions logged without one: the platform's audit
log may omit request ids that its feedback carries). Feedback counts when it arrives within
`feedback_window_hours` of its impression, which may be on the next day (late feedback): the
next day's raw events are read too when they exist.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ltr_assets.ingest.interruptions import interruptions_passed_on
from ltr_assets.lake import atomic
from ltr_assets.lake.paths import Lake, LakePath
from ltr_assets.lake.s3 import S3Path, named_parquet_errors
from ltr_core.events import LOGGING_POLICY_COLUMNS
from ltr_core.features import (
    ACTION_GRADES,
    ATTRIBUTE_COLUMNS,
    FEATURE_COLUMNS,
    FEEDBACK,
    RECOMMENDATION,
)

# The logging policy's columns (ltr_core.events.LOGGING_POLICY_COLUMNS) with their SQL types:
# raw_events written before they existed have none of them, so a missing one reads as null.
POLICY_COLUMNS: dict[str, str] = {
    "policy": "VARCHAR",
    "propensity": "DOUBLE",
    "deterministic_rank": "INTEGER",
    "team": "VARCHAR",
}
assert tuple(POLICY_COLUMNS) == LOGGING_POLICY_COLUMNS
DEFAULT_MEMORY_LIMIT = "2GB"  # DuckDB's memory for the join; it spills past it
BATCH_ROWS = 100_000


@dataclass
class MatrixReport:
    day: date
    rows: int
    groups: int
    groups_with_positive: int
    label_counts: dict[int, int]
    feedback_events: int  # feedback events timestamped on this day
    feedback_matched: int  # feedback (this day or late) matched to this day's impressions
    late_feedback_matched: int
    next_day_present: bool
    path: LakePath


# A list's id: the JSON array of its key, `["<request_id>"]`, or for a list logged without a
# request id `[null, "<case_id>", "<UTC day>"]`. The parts stay apart (JSON quotes them), so no
# request id, whatever its text, is the id of a list without one, nor of another request.
_GROUP_ID = (
    "CAST(CASE WHEN request_id IS NOT NULL THEN json_array(request_id) "
    "ELSE json_array(NULL, case_id, strftime(timestamp, '%Y-%m-%d')) END AS VARCHAR)"
)


def _grade_case() -> str:
    whens = " ".join(f"WHEN '{action}' THEN {grade}" for action, grade in ACTION_GRADES.items())
    return f"CASE action {whens} END"


def _views_sql(
    feedback_window_hours: int,
    source: str,
    day: date,
    missing: Iterable[str] = (),
    earlier: str | None = None,
) -> list[str]:
    """The join, one view a step: impressions, feedback, matches, labels, rows. `source` is
    the relation the day's raw events are read from (`_source`); `missing` the logging-policy
    columns none of its files has (older partitions), read as nulls; `earlier` the day
    before's raw events, whose requests a feedback may name (its own matrix matches those)."""
    earlier_requests = (
        f"SELECT request_id, lawyer_id FROM {earlier} "
        f"WHERE event_type = '{RECOMMENDATION}' AND request_id IS NOT NULL"
        if earlier
        else "SELECT CAST(NULL AS VARCHAR) AS request_id, CAST(NULL AS VARCHAR) AS lawyer_id "
        "WHERE false"
    )
    columns = ", ".join(
        f"i.{c}" for c in (*FEATURE_COLUMNS, *ATTRIBUTE_COLUMNS, *LOGGING_POLICY_COLUMNS)
    )
    window = f"INTERVAL {int(feedback_window_hours)} HOUR"
    nulls = "".join(f", CAST(NULL AS {POLICY_COLUMNS[c]}) AS {c}" for c in missing)
    return [
        f"CREATE VIEW events AS SELECT *{nulls} FROM {source}",
        f"CREATE VIEW earlier_requests AS {earlier_requests}",
        f"""CREATE VIEW impressions AS  -- one per (group, lawyer): the first one shown
        SELECT * FROM (
            SELECT *, {_GROUP_ID} AS group_id
            FROM events WHERE event_type = '{RECOMMENDATION}')
        QUALIFY row_number() OVER (
            PARTITION BY group_id, lawyer_id ORDER BY timestamp, rank_position, event_id) = 1""",
        # one copy per event id: the ingest keeps one per day, but a copy on each side of
        # midnight is in both days' raw events; the earliest is kept, as the ingest keeps it
        f"""CREATE VIEW feedback AS
        SELECT event_id, timestamp, request_id, case_id, lawyer_id, {_grade_case()} AS grade
        FROM events WHERE event_type = '{FEEDBACK}'
        QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY timestamp, action) = 1""",
        f"""CREATE VIEW matched AS
        SELECT * FROM (
            SELECT f.event_id, i.group_id, i.lawyer_id, f.grade, f.timestamp AS fb_time,
                   i.timestamp AS shown_at
            FROM feedback f JOIN impressions i
              ON f.request_id = i.request_id AND f.lawyer_id = i.lawyer_id
            UNION ALL  -- no request id: the latest impression of (case, lawyer) before it
            SELECT f.event_id, i.group_id, i.lawyer_id, f.grade, f.timestamp, i.timestamp
            FROM (SELECT * FROM feedback WHERE request_id IS NULL) f
            ASOF JOIN impressions i
              ON f.case_id = i.case_id AND f.lawyer_id = i.lawyer_id
             AND f.timestamp >= i.timestamp
            UNION ALL  -- a request id no impression has (here or the day before), where
                       -- impressions were logged without one: the latest of those of (case,
                       -- lawyer) before it
            SELECT f.event_id, i.group_id, i.lawyer_id, f.grade, f.timestamp, i.timestamp
            FROM (SELECT * FROM feedback g WHERE request_id IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM impressions s
                    WHERE s.request_id = g.request_id AND s.lawyer_id = g.lawyer_id)
                  AND NOT EXISTS (
                    SELECT 1 FROM earlier_requests e
                    WHERE e.request_id = g.request_id AND e.lawyer_id = g.lawyer_id)) f
            ASOF JOIN (SELECT * FROM impressions WHERE request_id IS NULL) i
              ON f.case_id = i.case_id AND f.lawyer_id = i.lawyer_id
             AND f.timestamp >= i.timestamp)
        WHERE fb_time >= shown_at AND fb_time < shown_at + {window}""",
        f"""CREATE VIEW rows AS
        SELECT i.group_id, i.timestamp AS shown_at, i.request_id, i.case_id, i.lawyer_id,
               i.rank_position, {columns},
               CAST(coalesce(l.label, 0) AS TINYINT) AS label,
               CAST(coalesce(l.n_feedback, 0) AS INTEGER) AS n_feedback,
               min(i.timestamp) OVER (PARTITION BY i.group_id) AS group_start
        FROM (SELECT * FROM impressions WHERE CAST(timestamp AS DATE) = DATE '{day}') i
        LEFT JOIN (SELECT group_id, lawyer_id, max(grade) AS label, count(*) AS n_feedback
                   FROM matched GROUP BY ALL) l
        USING (group_id, lawyer_id)""",
    ]


class _Summary:
    """The report's figures, gathered from the matrix's batches as they are written."""

    def __init__(self) -> None:
        self.groups: set[str] = set()
        self.positive_groups: set[str] = set()
        self.labels: Counter[int] = Counter()

    def counted(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            groups = batch.column("group_id")
            labels = np.asarray(batch.column("label").to_numpy(zero_copy_only=False))
            self.groups.update(str(g) for g in pc.unique(groups).to_pylist())
            positive = pc.filter(groups, pa.array(labels > 0))
            self.positive_groups.update(str(g) for g in pc.unique(positive).to_pylist())
            values, counts = np.unique(labels, return_counts=True)
            for value, n in zip(values.tolist(), counts.tolist(), strict=True):
                self.labels[int(value)] += int(n)
            yield batch


def _source(paths: list[LakePath], folder: Path) -> str:
    """The raw events of `paths` that exist, as a relation DuckDB reads: local files through
    read_parquet; an object on S3 first copied whole (one consistent read) to a local file in
    `folder`, so DuckDB streams it from disk like a local one (its httpfs extension is
    downloaded at run time and is not relied on) and the decoded day is never held whole."""
    files: list[str] = []
    for path in paths:
        if not path.exists():
            continue
        if isinstance(path, S3Path):
            local = folder / f"{len(files)}-{path.name}"
            local.write_bytes(path.read_bytes())
            with named_parquet_errors(path):  # DuckDB would name the copy, not the object
                pq.read_metadata(local)
            files.append(str(local))
        else:
            files.append(str(path))
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    # by name: a day written before the logging-policy columns beside one written after them
    return f"read_parquet([{listed}], union_by_name = true)"


def _missing_columns(con: duckdb.DuckDBPyConnection, source: str) -> list[str]:
    """The logging-policy columns that no file of `source` has."""
    present = {str(row[0]) for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    return [c for c in LOGGING_POLICY_COLUMNS if c not in present]


def build_feature_matrix(
    lake: Lake,
    day: date,
    feedback_window_hours: int,
    *,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> MatrixReport:
    """Build and write feature_matrix[day] from raw_events[day] (and [day+1] when present).

    DuckDB works within `memory_limit`, spilling to a scratch folder beside the output, and the
    matrix is streamed to Parquet in batches (`atomic.write_parquet_stream`), so memory does
    not grow with the day; the report's figures are gathered from the batches as they are
    written (`_Summary`)."""
    own = lake.raw_events(day)
    if not own.exists():
        raise FileNotFoundError(f"raw_events for {day} is not in the lake ({own})")
    next_day = lake.raw_events(day + timedelta(days=1))
    path = lake.feature_matrix(day)
    with atomic.scratch_folder(path) as folder, interruptions_passed_on():
        con = duckdb.connect(
            config={"memory_limit": memory_limit, "temp_directory": str(folder / "duckdb")}
        )
        try:
            # days and group ids are UTC days, whatever the host's TZ
            con.execute("SET TimeZone = 'UTC'")
            source = _source([own, next_day], folder)
            missing = _missing_columns(con, source)
            before = lake.raw_events(day - timedelta(days=1))
            earlier = _source([before], folder) if before.exists() else None
            for statement in _views_sql(feedback_window_hours, source, day, missing, earlier):
                con.execute(statement)
            found = con.execute(
                f"""SELECT count(*) FILTER (WHERE CAST(f.timestamp AS DATE) = DATE '{day}'),
                       count(m.event_id) FILTER (WHERE CAST(m.shown_at AS DATE) = DATE '{day}'),
                       count(m.event_id) FILTER (WHERE CAST(m.shown_at AS DATE) = DATE '{day}'
                                                 AND CAST(f.timestamp AS DATE) > DATE '{day}')
                FROM feedback f LEFT JOIN matched m USING (event_id)"""
            ).fetchall()  # to the end: this DuckDB refuses new work while a result is unread
            if len(found) != 1:  # an aggregate without GROUP BY always returns one row
                raise RuntimeError("the feedback count query did not return one row")
            counts = found[0]
            reader = con.sql(
                "SELECT * EXCLUDE (group_start) FROM rows "
                "ORDER BY group_start, group_id, rank_position NULLS LAST, lawyer_id"
            ).to_arrow_reader(BATCH_ROWS)
            summary = _Summary()
            rows = atomic.write_parquet_stream(path, reader.schema, summary.counted(reader))
        finally:
            con.close()
    day_feedback, matched, late = counts
    return MatrixReport(
        day=day,
        rows=rows,
        groups=len(summary.groups),
        groups_with_positive=len(summary.positive_groups),
        label_counts={
            grade: summary.labels[grade] for grade in sorted(set(ACTION_GRADES.values()))
        },
        feedback_events=int(day_feedback),
        feedback_matched=int(matched),
        late_feedback_matched=int(late),
        next_day_present=next_day.exists(),
        path=path,
    )
