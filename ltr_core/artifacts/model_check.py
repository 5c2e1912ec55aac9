"""Check untrusted LightGBM model text in a child process first: its structure, then LightGBM's
parse.

LightGBM does not always raise on a malformed model: some truncated files abort the whole
process (SIGABRT) or crash it (SIGSEGV). A registry or serving process must never die because of
an artifact, so the text is parsed (and one row scored) in a throwaway child; only when the child
succeeds does the caller parse the same bytes in-process, where the outcome is then known.

The child first reads the text with `model_format.check_model_format` (the structure LightGBM
trusts: child indices, cycles, sizes) and parses it with LightGBM only when that passes. Why in
the child: the structure check is pure Python, linear in the text, and holds the GIL throughout;
run in the serving process it starved /rank's event loop for as long as it took on a model of
tens of MB (docs/benchmarks.md, "Other measurements"). A pass is remembered for the
in-process `ensure_model_format` as well, so the scorer built next does not check it again.

The child is this file run as a script, `python -I -S model_check.py LIB FEATURES [--parse-only]`:
model text on stdin, one JSON line on stdout. It calls LightGBM's C library LIB through ctypes
(the same C functions `lightgbm.Booster(model_str=)` and `predict` call) instead of importing the
Python package, which pulls in pandas and scipy and takes seconds to import; `-I -S` skip
site-packages too, so the child needs only the standard library (`model_format` is loaded from
its file beside this one) and the check costs a process start, one pass and one parse.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import json
import math
import platform
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

if __name__ != "__main__":  # the child runs isolated and loads model_format from its file
    from ltr_core.artifacts import model_format
    from ltr_core.artifacts.model_format import MalformedModel

CHILD_TIMEOUT_S = 120.0


class UnsafeModel(ValueError):
    """The model text does not load (or crashed the child that tried)."""


def check_model_text(
    model_bytes: bytes,
    features: Sequence[str],
    timeout_s: float = CHILD_TIMEOUT_S,
    *,
    check_format: bool = True,
) -> None:
    """In a child process, check the structure of `model_bytes` (MalformedModel says why it is
    refused), then load it with LightGBM and score one row (UnsafeModel otherwise).
    `check_format=False` skips the structure check, to reach LightGBM's own parse with a text
    the check would refuse (tests of the crash handling). The same bytes and features are
    checked once per process: publish, verify and a reload read the same model more than once,
    and the outcome cannot change."""
    key = model_format.passed_key(model_bytes, features)
    if (key, check_format) in _PASSED:
        return
    _check_in_child(model_bytes, features, timeout_s, check_format)
    if len(_PASSED) >= _PASSED_MAX:
        _PASSED.clear()
    _PASSED.add((key, check_format))
    if check_format:
        model_format.remember_passed(key)


# Model texts (digest and feature list, and whether the structure was checked) that passed the
# child check; bounded.
_PASSED: set[tuple[model_format.PassedKey, bool]] = set()
_PASSED_MAX = 256


def _check_in_child(
    model_bytes: bytes, features: Sequence[str], timeout_s: float, check_format: bool
) -> None:
    command = [sys.executable, "-I", "-S", __file__, library_path(), json.dumps(list(features))]
    if not check_format:
        command.append("--parse-only")
    # The text reaches the child's stdin from a file, not a pipe: feeding a pipe is a loop of
    # 4 KiB writes in Python, thousands of GIL hand-overs on a large model.
    try:
        with tempfile.TemporaryFile() as text:
            text.write(model_bytes)
            text.seek(0)
            done = subprocess.run(
                command, stdin=text, capture_output=True, timeout=timeout_s, check=False
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
    if "malformed" in answer:
        raise MalformedModel(str(answer["malformed"]))
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


def _sibling_model_format() -> ModuleType:
    """`model_format` loaded from its file beside this one: the child runs isolated (`-I`), with
    neither the project nor site-packages on its path."""
    path = Path(__file__).with_name("model_format.py")
    spec = importlib.util.spec_from_file_location("_ltr_model_format", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _child(library: str, features_json: str, parse_only: bool) -> int:
    """Runs in the child: check the structure of stdin's text (unless `parse_only`), parse it
    with LightGBM, score a row of 0.5s, report as one JSON line."""
    text = sys.stdin.buffer.read()
    if not parse_only:
        checker = _sibling_model_format()
        try:
            checker.check_model_format(text, json.loads(features_json))
        except checker.MalformedModel as exc:
            print(json.dumps({"malformed": str(exc)}))
            return 0
    lib = ctypes.cdll.LoadLibrary(library)
    lib.LGBM_GetLastError.restype = ctypes.c_char_p

    def call(result: int) -> None:
        if result != 0:
            raise RuntimeError(lib.LGBM_GetLastError().decode(errors="replace"))

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
    sys.exit(_child(sys.argv[1], sys.argv[2], "--parse-only" in sys.argv[3:]))
