"""Where each partition's data lives in the data lake (LTR_DATA_DIR): a local folder, or
`s3://bucket/prefix` shared by runs in separate containers (`ltr_assets.lake.s3`)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ltr_assets.lake.s3 import S3Path, named_parquet_errors, s3_filesystem
from ltr_core.s3_url import split_s3_url

if TYPE_CHECKING:
    from ltr_core.settings import Settings

LakePath = Path | S3Path  # a local file, or an object key of the lake on S3


@dataclass(frozen=True)
class Lake:
    root: LakePath

    def raw_events(self, day: date) -> LakePath:
        return self.root / "raw_events" / f"{day.isoformat()}.parquet"

    def quarantine(self, day: date) -> LakePath:
        return self.root / "quarantine" / f"{day.isoformat()}.jsonl"

    def feature_matrix(self, day: date) -> LakePath:
        return self.root / "feature_matrix" / f"{day.isoformat()}.parquet"

    def online_comparison(self, day: date) -> LakePath:
        """Day D's interleaving counts for the pair compared on D (online_comparison)."""
        return self.root / "online_comparison" / f"{day.isoformat()}.json"

    def candidate(self, day: date) -> LakePath:
        """The trained-but-not-yet-published model of a partition (ltr_model)."""
        return self.root / "candidates" / day.isoformat()


def lake_from_settings(settings: Settings) -> Lake:
    """The local lake at LTR_DATA_DIR, or, when it is an s3:// URL, the lake in that bucket,
    reached through S3_ENDPOINT / AWS_REGION and the AWS credential chain."""
    if not settings.lake_url:
        return Lake(settings.data_dir)
    bucket, prefix = split_s3_url(settings.lake_url)
    fs = s3_filesystem(settings.s3.endpoint, settings.s3.region)
    return Lake(S3Path(fs, f"{bucket}/{prefix}" if prefix else bucket))


def read_frame(path: LakePath) -> pd.DataFrame:
    """A Parquet file of the lake as a DataFrame."""
    if isinstance(path, S3Path):
        data = path.read_bytes()  # one consistent read
        with named_parquet_errors(path):
            return pd.read_parquet(io.BytesIO(data))
    return pd.read_parquet(path)
