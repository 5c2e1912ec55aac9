"""feature_matrix: join a day's impressions with their feedback into graded, query-grouped rows.

A query group is one recommendation list (request_id; fallback case_id + day). Each (group,
lawyer) gets the strongest feedback matched to it: by request_id when the feedback has one, else
by (case_id, lawyer_id) to the latest impression before it. Feedback counts when it arrives within
`feedback_window_hours` of its impression, which may be on the next day (late feedback): the
next day's raw events are read too when they exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import pyarrow as pa

from ltr_assets import atomic, s3_lake
from ltr_assets.lake import Lake, LakePath
from ltr_assets.s3_lake import S3Path
from ltr_assets.schema import (
    ACTION_GRADES,
    ATTRIBUTE_COLUMNS,
    FEATURE_COLUMNS,
    FEEDBACK,
    RECOMMENDATION,
)


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


def _grade_case() -> str:
    whens = " ".join(f"WHEN '{action}' THEN {grade}" for action, grade in ACTION_GRADES.items())
    return f"CASE action {whens} END"


def _views_sql(feedback_window_hours: int, source: str, day: date) -> list[str]:
    """The join, one view a step: impressions, feedback, matches, labels, rows. `source` is
    the relation the day's raw events are read from (`_source`)."""
    columns = ", ".join(f"i.{c}" for c in (*FEATURE_COLUMNS, *ATTRIBUTE_COLUMNS))
    window = f"INTERVAL {int(feedback_window_hours)} HOUR"
    return [
        f"CREATE VIEW events AS SELECT * FROM {source}",
        f"""CREATE VIEW impressions AS  -- one per (group, lawyer): the first one shown
        SELECT * FROM (
            SELECT *, coalesce(request_id, case_id || '@' || strftime(timestamp, '%Y-%m-%d'))
                      AS group_id
            FROM events WHERE event_type = '{RECOMMENDATION}')
        QUALIFY row_number() OVER (
            PARTITION BY group_id, lawyer_id ORDER BY timestamp, rank_position, event_id) = 1""",
        f"""CREATE VIEW feedback AS
        SELECT event_id, timestamp, request_id, case_id, lawyer_id, {_grade_case()} AS grade
        FROM events WHERE event_type = '{FEEDBACK}'""",
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


def _source(con: duckdb.DuckDBPyConnection, paths: list[LakePath]) -> str:
    """The raw events of `paths` that exist, as a relation DuckDB reads: local files through
    read_parquet; objects on S3 read by pyarrow (each in one consistent read) and registered in
    the connection as an Arrow table (DuckDB's httpfs extension is downloaded at run time and
    is not relied on)."""
    present = [p for p in paths if p.exists()]
    s3 = [p for p in present if isinstance(p, S3Path)]
    if not s3:
        files = [str(p) for p in present]
        return "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "])"
    events = pa.concat_tables([s3_lake.read_table(p) for p in s3])
    con.register("raw_events_arrow", events)
    return "raw_events_arrow"


def build_feature_matrix(lake: Lake, day: date, feedback_window_hours: int = 24) -> MatrixReport:
    """Build and write feature_matrix[day] from raw_events[day] (and [day+1] when present)."""
    own = lake.raw_events(day)
    if not own.exists():
        raise FileNotFoundError(f"raw_events for {day} is not in the lake ({own})")
    next_day = lake.raw_events(day + timedelta(days=1))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # days and group ids are UTC days, whatever the host's TZ
    try:
        source = _source(con, [own, next_day])
        for statement in _views_sql(feedback_window_hours, source, day):
            con.execute(statement)
        table: pa.Table = con.sql(
            "SELECT * EXCLUDE (group_start) FROM rows "
            "ORDER BY group_start, group_id, rank_position NULLS LAST, lawyer_id"
        ).to_arrow_table()
        counts = con.execute(
            f"""SELECT count(*) FILTER (WHERE CAST(f.timestamp AS DATE) = DATE '{day}'),
                       count(m.event_id) FILTER (WHERE CAST(m.shown_at AS DATE) = DATE '{day}'),
                       count(m.event_id) FILTER (WHERE CAST(m.shown_at AS DATE) = DATE '{day}'
                                                 AND CAST(f.timestamp AS DATE) > DATE '{day}')
                FROM feedback f LEFT JOIN matched m USING (event_id)"""
        ).fetchone()
    finally:
        con.close()
    if counts is None:  # an aggregate without GROUP BY always returns one row
        raise RuntimeError("the feedback count query returned no row")
    day_feedback, matched, late = counts
    path = lake.feature_matrix(day)
    atomic.write_parquet(path, table)
    labels = table.column("label").to_pylist()
    groups = table.column("group_id").to_pylist()
    positive_groups = {
        g for g, label in zip(groups, labels, strict=True) if label is not None and label > 0
    }
    return MatrixReport(
        day=day,
        rows=table.num_rows,
        groups=len(set(groups)),
        groups_with_positive=len(positive_groups),
        label_counts={grade: labels.count(grade) for grade in sorted(set(ACTION_GRADES.values()))},
        feedback_events=int(day_feedback),
        feedback_matched=int(matched),
        late_feedback_matched=int(late),
        next_day_present=next_day.exists(),
        path=path,
    )
