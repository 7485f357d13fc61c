"""What cnnlab reads of the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.core.cpu import cpu_kind


@pytest.mark.parametrize(
    ("flags", "kind"),
    [
        ("fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile", "AMX"),
        ("fpu avx2 avx512f avx512_bf16", "AVX-512 with bf16, no AMX"),
        ("fpu avx2 avx512f avx512bw", "AVX-512, no bf16"),
        ("fpu sse4_2 avx2 fma", "AVX2, no AVX-512"),
        ("fpu sse4_2", "no AVX2"),
    ],
)
def test_cpu_kind_reads_the_flags(tmp_path: Path, flags: str, kind: str) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: {flags}\n")
    assert cpu_kind(info) == f"Some CPU 9000 ({kind})"
