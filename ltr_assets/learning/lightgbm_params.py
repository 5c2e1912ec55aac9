"""The LightGBM parameters every fit of the project shares (LambdaRank, the click model's γ, the
click-gain model): deterministic, row-wise, quiet, seeded; each fit adds its own on top.

`num_threads` is LTR_NUM_THREADS (`Settings.num_threads`): 0 is LightGBM's default, all cores.
"""

from __future__ import annotations

from typing import Any

BASE_PARAMS: dict[str, Any] = {
    "lambda_l2": 1.0,
    "seed": 42,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}


def lightgbm_params(num_threads: int, **specific: Any) -> dict[str, Any]:
    """The shared parameters with `num_threads` and a fit's own parameters on top."""
    return {**BASE_PARAMS, "num_threads": num_threads, **specific}
