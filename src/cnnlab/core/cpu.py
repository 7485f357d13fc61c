"""Facts about this CPU and how cnnlab runs on it: native bf16, autocast, threads, layout."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cnnlab.core.errors import ConfigError

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of bf16 dot products

# The two switches that keep torch to an older instruction set on a newer CPU: oneDNN's
# (convolutions, matmuls) and ATen's own kernels' (BN, ReLU, adds). Set to AVX2 they make an
# AVX-512 machine run the kernels an AVX2-only one runs: how cnnlab's AVX2 figures can be
# approximated without that machine (BENCHMARKS.md says where they were).
ISA_SWITCHES = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def isa_cap(environ: Mapping[str, str] | None = None) -> str | None:
    """ "AVX2" when torch is held to AVX2 by ONEDNN_MAX_CPU_ISA or ATEN_CPU_CAPABILITY,
    "pre-AVX2" when to less (SSE4.1, AVX, ATen's scalar ``default``), else None. A cap
    turns native bf16 off, whatever the CPU's flags say.
    """
    env = os.environ if environ is None else environ
    caps = []
    for switch in ISA_SWITCHES:
        value = env.get(switch, "").strip().lower()
        if value.startswith("avx2"):
            caps.append("AVX2")
        elif value in ("sse41", "avx", "default"):
            caps.append("pre-AVX2")
    if not caps:
        return None
    return "pre-AVX2" if "pre-AVX2" in caps else "AVX2"


def native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The CPU flag that gives native bf16 matmuls (AMX, AVX-512 BF16), or None.

    Without one, torch still runs bf16 but converts to fp32 on the way: slower, not faster.
    Under an AVX2 cap (:func:`isa_cap`) oneDNN may not use the flag, so there is none.
    """
    if isa_cap() is not None:
        return None
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:  # not Linux: ask torch's own CPU feature check
        import torch

        check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
        return "avx512_bf16" if check is not None and check() else None
    return next((flag for flag in NATIVE_BF16_FLAGS if flag in flags), None)


def cpu_kind(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """What kind of x86 CPU this is, as far as training speed goes, e.g. "AMD EPYC
    (AVX-512 with bf16, no AMX)": the vector width and bf16 support decide the kernels
    oneDNN runs, and so how much a time budget buys."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    name = next(
        (
            line.partition(":")[2].strip()
            for line in text.splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    flags = set(text.split())
    if "amx_bf16" in flags:
        kind = "AMX"
    elif "avx512_bf16" in flags:
        kind = "AVX-512 with bf16, no AMX"
    elif "avx512f" in flags:
        kind = "AVX-512, no bf16"
    elif "avx2" in flags:
        kind = "AVX2, no AVX-512"
    else:
        kind = "no AVX2"
    cap = isa_cap()
    if cap is not None and kind != "no AVX2":
        switches = ", ".join(f"{s}={os.environ[s]}" for s in ISA_SWITCHES if s in os.environ)
        kind = f"{cap} kernels only ({switches}) on {kind}"
    return f"{name} ({kind})"


def bf16_autocast(enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on the CPU when ``enabled``, else a no-op: how the bf16 setting runs
    in the trainer, its tuner and `cnnlab bench` alike."""
    import torch

    if enabled:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` intra-op threads (None: as is); restores the old count."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"Expected threads >= 1, received threads={threads}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def uses_channels_last(channels_last: bool | None) -> bool:
    """NHWC unless the setting is False: None (automatic) means NHWC, oneDNN's fast layout."""
    return channels_last is not False
