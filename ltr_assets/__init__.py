"""The LTR platform's pipeline: Dagster wiring (definitions) over Dagster-free domain modules.

OpenMP threads (LightGBM's) wait passively unless told otherwise: on a busy 2-core machine the
default spinning wait made training 5x slower (measured: 147 s against 28.6 s for the same
training beside a running test suite). It must be set before LightGBM loads its OpenMP runtime,
so it is set here, at the package's first import.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
