"""The decoder's Triton attention kernel (in Triton's CPU interpreter) against the torch
reference, and the invariants of packing chunks into shared windows."""

from __future__ import annotations

import pytest

from hpc_checks import run_checks


@pytest.fixture(scope="module")
def checks(engine_runtime: dict[str, str]) -> dict:
    return run_checks("kernel_checks.py", timeout=300)


def test_kernel_matches_the_reference(checks: dict) -> None:
    k = checks["kernel"]
    assert k["f32_err"] < 1e-4 and k["fp8_err"] < 1e-4  # same math, same inputs
    assert k["bf16_err"] < 0.02  # bf16 output rounding
    assert k["full_range_vs_sdpa_err"] < 1e-5  # one full range == plain attention
    assert k["two_ranges_err"] < 1e-4  # two ranges == attention over both
    assert k["two_ranges_differs_from_first_only"] > 0.01  # ... and the second one counts


def test_kv_store_kernel_matches_the_reference(checks: dict) -> None:
    s = checks["store"]
    assert s["bf16_err"] == 0 and s["scale_err"] == 0 and s["fp8_other_mismatches"] == 0
    assert s["fp8_interpreter_carry_slips"] < 0.02 * s["fp8_values"]  # the interpreter's, not ours
    assert all(s[f"{n}_untouched_slots_zero"] and s[f"{n}_written"] for n in ("bf16", "fp8"))


def test_rows_past_the_live_ones_neither_corrupt_nor_cost(checks: dict) -> None:
    r = checks["padded_rows"]
    assert r["rows"] == 3 and r["tokens_per_row"] == [30, 30, 30] and r["distinct_tokens"] > 3
    assert r["rows_same_as_fresh"] == 3
    assert r["parked_rows_write_scratch_only"] and r["parked_rows_read_one_frame"]


def test_float8_kv_stays_close_to_exact(checks: dict) -> None:
    k = checks["kernel"]
    assert k["fp8_dtype"] == "torch.float8_e4m3fn"
    assert k["fp8_vs_exact_err"] < 0.2


def test_packing_shares_windows_without_overlap(checks: dict) -> None:
    p = checks["packing"]
    assert p["rows"] == 7 and p["unpacked_windows"] == 7
    assert p["windows"] < 7 and p["shared_windows"] >= 1
    assert all(s <= 30.0 for s in p["window_s"])
    assert p["span_overlaps"] == 0 and p["inside"] and p["tails_end_at_window_end"]
    assert p["subset_windows"] <= 2 and p["subset_audio_kept"]
