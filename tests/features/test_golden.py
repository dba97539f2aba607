"""Same bytes in, same bits out, on every CPU: pinned pHashes, thumbnails, stored images,
verify distances and the synthetic web, checked here and under other CPU kernels.

The AMD failure of issue 8 came from a float BLAS matmul whose kernel OpenBLAS picks per
CPU; `OPENBLAS_CORETYPE=Haswell` reproduces it on an Intel machine, numpy's
`NPY_DISABLE_CPU_FEATURES` drops its AVX-512 loops, and `JSIMD_FORCENONE` turns off
libjpeg-turbo's SIMD. A machine or a dependency that computes differently fails here, at
the unit level, instead of as a recall drift somewhere else. Refresh only on purpose:
`python tests/features/golden.py --write`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import golden

KERNELS = {
    "openblas-haswell": {"OPENBLAS_CORETYPE": "Haswell"},
    "openblas-zen": {"OPENBLAS_CORETYPE": "Zen"},
    "numpy-no-avx512": {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
    "libjpeg-no-simd": {"JSIMD_FORCENONE": "1"},
}


def _expected() -> dict[str, object]:
    return json.loads(golden.VALUES.read_text())  # type: ignore[no-any-return]


def _diff(got: dict[str, object], want: dict[str, object]) -> list[str]:
    return [k for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]


def test_values_match_the_committed_golden_file() -> None:
    got, want = golden.compute(), _expected()
    assert got == want, f"differs in {_diff(got, want)}; see tests/features/golden.py"


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_values_are_the_same_under_other_cpu_kernels(kernel: str) -> None:
    env = {**os.environ, **KERNELS[kernel]}
    if kernel == "numpy-no-avx512":  # numpy refuses to disable a feature this CPU lacks
        from numpy.lib import _utils_impl

        if "X86_V4*" not in _utils_impl._opt_info():
            pytest.skip("this CPU has no AVX-512 loops to disable")
    run = subprocess.run(
        [sys.executable, str(Path(golden.__file__))],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout)
    assert got == _expected(), f"{kernel}: differs in {_diff(got, _expected())}"
