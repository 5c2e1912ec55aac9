"""`s3://bucket[/prefix]` URLs: the one parser, shared by the settings (LTR_DATA_DIR) and the
lake on S3 (`ltr_assets.lake.s3`)."""

from __future__ import annotations

import re

S3_SCHEME = "s3://"


def is_s3_url(value: str) -> bool:
    return value.strip().lower().startswith(S3_SCHEME)


def looks_like_url(value: str) -> bool:
    """`scheme:/…` (`s3:/bucket`, `gs://…`, `file:///…`) or `s3:…`: meant as a URL, never a
    folder (a folder named `lake-T02:15` is not one)."""
    return re.match(r"\s*(?:[A-Za-z][A-Za-z0-9+.-]*:/|s3:)", value, re.IGNORECASE) is not None


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` → ("bucket", "some/prefix"): the prefix without its leading
    and trailing slashes. ValueError without a bucket, or with an empty, `.` or `..` segment in
    the prefix (`s3://b/a//c`, `s3://b/../x`)."""
    text = url.strip()
    if not is_s3_url(text):
        raise ValueError(f"{url!r} is not an s3://bucket[/prefix] URL")
    bucket, _, prefix = text[len(S3_SCHEME) :].partition("/")
    prefix = prefix.strip("/")
    if not bucket or any(part in {"", ".", ".."} for part in prefix.split("/") if prefix):
        raise ValueError(f"{url!r} is not an s3://bucket[/prefix] URL")
    return bucket, prefix


def normalize_s3_url(url: str) -> str:
    """The URL as `s3://bucket[/prefix]`, no trailing slash (ValueError as `split_s3_url`)."""
    bucket, prefix = split_s3_url(url)
    return f"{S3_SCHEME}{bucket}/{prefix}" if prefix else f"{S3_SCHEME}{bucket}"
