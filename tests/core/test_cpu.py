"""What cnnlab reads of the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.core.cpu import cpu_kind, isa_cap, native_bf16


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


@pytest.mark.parametrize(
    ("environ", "cap"),
    [
        ({}, None),
        ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX2"),
        ({"ATEN_CPU_CAPABILITY": "avx2"}, "AVX2"),
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, None),
        ({"ATEN_CPU_CAPABILITY": "avx512"}, None),
        ({"ATEN_CPU_CAPABILITY": "default"}, "pre-AVX2"),
        ({"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "default"}, "pre-AVX2"),
    ],
)
def test_isa_cap_reads_torchs_switches(environ: dict[str, str], cap: str | None) -> None:
    assert isa_cap(environ) == cap


def test_an_avx2_cap_turns_native_bf16_off_and_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: Some CPU 9000\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert native_bf16(info) is None
    assert cpu_kind(info) == (
        "Some CPU 9000 (AVX2 kernels only (ONEDNN_MAX_CPU_ISA=AVX2) on AVX-512 with bf16, no AMX)"
    )
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert native_bf16(info) == "avx512_bf16"
