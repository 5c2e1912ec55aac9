"""The `ltr` command's entry point, importable without the pipeline's dependencies.

The serving-only install (no `pipeline` extra: no pandas, DuckDB, LightGBM's training side or
Dagster) installs the `ltr` script too. There `ltr serve` still runs the service (it needs only
what serving imports), and every other subcommand says what it needs instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

NEEDS_PIPELINE = 2  # exit status: the subcommand needs the pipeline install


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from ltr_assets.cli import main as pipeline_main
    except ModuleNotFoundError as missing:
        if args[:1] == ["serve"]:
            from ltr_serving.server import main as serve_main

            return serve_main(args[1:], prog="ltr serve")
        print(
            f"error: `ltr {' '.join(args[:1]) or '--help'}` needs the pipeline install "
            f"(module {missing.name!r} is missing): install the project with its `pipeline` "
            "extra. This install serves only: `ltr serve` (or `ltr-serve`).",
            file=sys.stderr,
        )
        return NEEDS_PIPELINE
    return pipeline_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
