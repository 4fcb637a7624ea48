"""Where a feature plan runs: Polars' streaming engine on the CPU or cuDF on a CUDA GPU."""

from __future__ import annotations

import ctypes
import importlib.util

import polars as pl

ENGINES: tuple[str, ...] = ("auto", "cpu", "gpu")


def _cuda_device_count() -> int:
    """CUDA devices visible to the driver, without importing a CUDA library (0 on failure)."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


def gpu_available() -> tuple[bool, str]:
    """Whether the GPU engine can run here, and why not when it cannot."""
    if importlib.util.find_spec("cudf_polars") is None:
        return False, "cudf_polars is not installed (pip install 'my_data_platform[gpu]')"
    if _cuda_device_count() < 1:
        return False, "no CUDA device is visible"
    return True, "CUDA device and cudf_polars available"


def resolve_engine(name: str) -> str:
    """``auto`` -> ``gpu`` where a CUDA device and cudf_polars exist, else ``cpu``.

    Asking for ``gpu`` where it cannot run is an error rather than a silent CPU run, so a
    GPU job that lost its GPU fails loudly instead of running 10x slower.
    """
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; expected one of {ENGINES}")
    if name == "cpu":
        return "cpu"
    ok, why = gpu_available()
    if name == "gpu" and not ok:
        raise RuntimeError(f"engine 'gpu' requested but unavailable: {why}")
    return "gpu" if ok else "cpu"


def collect(lf: pl.LazyFrame, engine: str = "auto", *, strict_gpu: bool = False) -> pl.DataFrame:
    """Run a feature plan: the streaming engine on the CPU (bounded memory), cuDF on the GPU.

    ``strict_gpu`` makes the GPU engine raise on any node it would otherwise hand back to the
    CPU, which the parity test uses to prove the plan really runs on the GPU.
    """
    if resolve_engine(engine) == "gpu":
        return lf.collect(engine=pl.GPUEngine(raise_on_fail=strict_gpu))
    return lf.collect(engine="streaming")
