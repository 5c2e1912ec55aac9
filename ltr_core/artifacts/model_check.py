"""Parse untrusted LightGBM model text in a child process first.

LightGBM does not always raise on a malformed model: some truncated files abort the whole
process (SIGABRT) or crash it (SIGSEGV). A registry or serving process must never die because of
an artifact, so the text is parsed (and one row scored) in a throwaway child; only when the child
succeeds does the caller parse the same bytes in-process, where the outcome is then known.

The child is this file run as a script, `python -I -S model_check.py LIB`: model text on stdin,
one JSON line on stdout. It calls LightGBM's C library LIB through ctypes (the same C functions
`lightgbm.Booster(model_str=)` and `predict` call) instead of importing the Python package, which
pulls in pandas and scipy and takes seconds to import; `-I -S` skip site-packages too, so the
child needs only the standard library and the check costs a process start and one parse.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import json
import math
import platform
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

CHILD_TIMEOUT_S = 120.0


class UnsafeModel(ValueError):
    """The model text does not load (or crashed the child that tried)."""


def check_model_text(
    model_bytes: bytes, features: Sequence[str], timeout_s: float = CHILD_TIMEOUT_S
) -> None:
    """Load `model_bytes` in a child process and score one row; raise UnsafeModel otherwise.
    The same bytes and features are checked once per process: publish, verify and a reload
    read the same model more than once, and the outcome cannot change."""
    key = (hashlib.sha256(model_bytes).hexdigest(), tuple(features))
    if key in _PASSED:
        return
    _check_in_child(model_bytes, features, timeout_s)
    if len(_PASSED) >= _PASSED_MAX:
        _PASSED.clear()
    _PASSED.add(key)


# Digests of model texts (with their feature lists) that passed the child check; bounded.
_PASSED: set[tuple[str, tuple[str, ...]]] = set()
_PASSED_MAX = 256


def _check_in_child(model_bytes: bytes, features: Sequence[str], timeout_s: float) -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", __file__, library_path()],
            input=model_bytes,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UnsafeModel(f"parsing the model took more than {timeout_s:.0f} s") from None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise UnsafeModel(f"LightGBM crashed parsing the model ({name}); refused")
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise UnsafeModel(f"the model check failed (exit {done.returncode}): {tail}") from None
    if "error" in answer:
        raise UnsafeModel(f"does not load: {answer['error']}")
    if answer.get("features") != list(features):
        raise UnsafeModel(f"features {answer.get('features')} != {list(features)}")
    if not answer.get("finite"):
        raise UnsafeModel("scoring a test row gave a non-finite score")


@functools.cache
def library_path() -> str:
    """lib_lightgbm of the installed lightgbm package, found without importing it."""
    spec = importlib.util.find_spec("lightgbm")
    if spec is None or not spec.submodule_search_locations:
        raise UnsafeModel("lightgbm is not installed")
    package = Path(next(iter(spec.submodule_search_locations)))
    names = {"Darwin": "lib_lightgbm.dylib", "Windows": "lib_lightgbm.dll"}
    name = names.get(platform.system(), "lib_lightgbm.so")
    for folder in (package / "lib", package / "bin", package.parent):
        if (folder / name).is_file():
            return str(folder / name)
    raise UnsafeModel(f"{name} not found beside {package}")


def _child(library: str) -> int:
    """Runs in the child: parse stdin, score a row of 0.5s, report as one JSON line."""
    lib = ctypes.cdll.LoadLibrary(library)
    lib.LGBM_GetLastError.restype = ctypes.c_char_p

    def call(result: int) -> None:
        if result != 0:
            raise RuntimeError(lib.LGBM_GetLastError().decode(errors="replace"))

    text = sys.stdin.buffer.read()
    try:
        handle = ctypes.c_void_p()
        iterations = ctypes.c_int(0)
        call(lib.LGBM_BoosterLoadModelFromString(ctypes.c_char_p(text), ctypes.byref(iterations),
                                                 ctypes.byref(handle)))  # fmt: skip
        classes, count = ctypes.c_int(0), ctypes.c_int(0)
        call(lib.LGBM_BoosterGetNumClasses(handle, ctypes.byref(classes)))
        call(lib.LGBM_BoosterGetNumFeature(handle, ctypes.byref(count)))
        size = 256
        buffers = [ctypes.create_string_buffer(size) for _ in range(count.value)]
        pointers = (ctypes.c_char_p * count.value)(
            *[ctypes.c_char_p(ctypes.addressof(b)) for b in buffers]
        )
        written, needed = ctypes.c_int(0), ctypes.c_size_t(0)
        call(lib.LGBM_BoosterGetFeatureNames(handle, count, ctypes.byref(written),
                                             ctypes.c_size_t(size), ctypes.byref(needed),
                                             pointers))  # fmt: skip
        if needed.value > size:
            raise RuntimeError(f"a feature name is longer than {size - 1} bytes")
        features = [b.value.decode("utf-8", errors="replace") for b in buffers]
        row = (ctypes.c_double * count.value)(*[0.5] * count.value)
        out = (ctypes.c_double * max(classes.value, 1))()
        out_len = ctypes.c_int64(0)
        float64, rows, row_major, normal, first_tree, all_trees = 1, 1, 1, 0, 0, -1  # C API codes
        call(
            lib.LGBM_BoosterPredictForMat(
                handle, row, float64, rows, count, row_major, normal, first_tree, all_trees,
                ctypes.c_char_p(b"num_threads=1"), ctypes.byref(out_len), out,
            )
        )  # fmt: skip
        finite = out_len.value >= 1 and all(math.isfinite(out[i]) for i in range(out_len.value))
        lib.LGBM_BoosterFree(handle)
    except RuntimeError as exc:  # LightGBM reported an error (a model it could not read)
        print(json.dumps({"error": str(exc)}))
        return 0
    print(json.dumps({"features": features, "finite": finite}))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
