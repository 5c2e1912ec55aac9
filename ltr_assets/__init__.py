"""The LTR platform's pipeline: Dagster wiring (definitions) over Dagster-free domain modules.

OpenMP threads (LightGBM's) wait passively unless told otherwise: on a machine busy with other
work the default spinning wait makes training several times slower (docs/benchmarks.md). It
must be set before LightGBM loads its OpenMP runtime, so it is set here, at the package's
first import.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
