"""Where the torch engine's GPU time goes on one synthetic day (GPU only).

Prints: the K/V store kernel checked against its torch reference on the GPU, the wall of one
engine pass and how busy the GPU was in it (union of kernel
intervals), kernel time by kind (matrix products, attention, the span kernel, elementwise,
reductions), the top kernels, and how long the host waited on the GPU. Then the encoder alone
eager vs ``torch.compile``, and the span-attention kernel's launch settings swept at full
batch. Same model, clips and token rate as bench_gpu_throughput.py.

    python bench/profile_engine.py --tokenizer .bench_assets/tokenizer.json --clips 240
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from audio_hpc.engines.base import DecodedClip, EngineOptions
from audio_hpc.engines.torch_attention import (
    BLOCK,
    WARPS,
    _attend_kernel,
    quantize,
    store_reference,
    triton_store,
)
from audio_hpc.engines.torch_checkpoint import load_vocab
from audio_hpc.engines.torch_decode import DecodeOptions
from audio_hpc.engines.torch_engine import TorchWhisperEngine
from audio_hpc.engines.torch_model import WhisperTorch
from bench_gpu_throughput import LARGE_V3, _time_ms, sync, synthetic_day

KINDS = (
    ("span attention", ("_attend_kernel",)),
    ("encoder attention", ("flash", "fmha", "cudnn", "attention")),
    ("matrix products", ("gemm", "nvjet", "cutlass", "sm90", "xmma", "cublas")),
    ("reductions", ("reduce", "softmax", "norm", "argmax", "max")),
    (
        "elementwise",
        ("elementwise", "vectorized", "gelu", "copy", "fill", "index", "scatter", "gather", "cat"),
    ),
)


def kind(name: str) -> str:
    low = name.lower()
    return next((k for k, keys in KINDS if any(key in low for key in keys)), "other")


def idle_gaps(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(start, length) of every stretch with no kernel running, between the first and last."""
    gaps, end = [], None
    for a, b in sorted(intervals):
        if end is not None and a > end:
            gaps.append((end, a - end))
        end = b if end is None else max(end, b)
    return gaps


def idle_summary(
    intervals: list[tuple[float, float]], host: list[tuple[float, float, str]]
) -> dict:
    """Where the GPU sat idle: by gap length, the largest gaps (ms from the first kernel,
    and what the host was doing meanwhile: the shortest host events spanning the gap), and
    idle per tenth of the pass."""
    gaps = idle_gaps(intervals)

    def doing(start: float, length: float) -> list[str]:
        spanning = [(b - a, name) for a, b, name in host if a <= start + length and b >= start]
        return [name for _, name in sorted(spanning)[:4]]

    t0, t1 = min(a for a, _ in intervals), max(b for _, b in intervals)
    bins = [0.0] * 10
    for start, length in gaps:
        bins[min(9, int(10 * (start - t0) / (t1 - t0)))] += length
    by_size = defaultdict(float)
    for _, length in gaps:
        by_size[
            "<0.1 ms"
            if length < 100
            else "0.1-1 ms"
            if length < 1e3
            else "1-10 ms"
            if length < 1e4
            else ">10 ms"
        ] += length / 1e6
    return {
        "gpu_busy_s": round((t1 - t0 - sum(g for _, g in gaps)) / 1e6, 3),
        "first_to_last_kernel_s": round((t1 - t0) / 1e6, 3),
        "idle_s_by_gap_length": {k: round(v, 3) for k, v in by_size.items()},
        "gaps": len(gaps),
        "largest_gaps": [
            {"ms": round(g / 1e3, 1), "at_ms": round((s - t0) / 1e3), "host": doing(s, g)}
            for s, g in sorted(gaps, key=lambda x: -x[1])[:12]
        ],
        "idle_s_per_tenth": [round(b / 1e6, 3) for b in bins],
    }


def engine_pass(engine: TorchWhisperEngine, clips: list[np.ndarray]) -> float:
    sync()
    t0 = time.perf_counter()
    list(engine.transcribe_stream(DecodedClip(f"c{i}", a) for i, a in enumerate(clips)))
    sync()
    return time.perf_counter() - t0


def profile_engine(engine: TorchWhisperEngine, clips: list[np.ndarray]) -> dict:
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        wall = engine_pass(engine, clips)
    kernels, by_kind, host_wait, host = [], defaultdict(float), defaultdict(float), []
    names = defaultdict(float)
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            kernels.append((e.time_range.start, e.time_range.end))
            by_kind[kind(e.name)] += e.time_range.elapsed_us()
            names[e.name[:160]] += e.time_range.elapsed_us()
        else:
            host.append((e.time_range.start, e.time_range.end, e.name[:60]))
        if e.name in (
            "cudaStreamSynchronize",
            "cudaEventSynchronize",
            "cudaDeviceSynchronize",
            "cudaMemcpyAsync",
            "cudaGraphLaunch",
            "cudaLaunchKernel",
            "cudaHostAlloc",
        ):
            host_wait[e.name] += e.time_range.elapsed_us()
    out = {
        "profile": "engine pass",
        "wall_s": round(wall, 3),
        **idle_summary(kernels, host),
        "kernel_s_by_kind": {
            k: round(v / 1e6, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])
        },
        "host_api_s": {k: round(v / 1e6, 3) for k, v in host_wait.items()},
        "top_kernels_s": {
            k: round(v / 1e6, 3) for k, v in sorted(names.items(), key=lambda kv: -kv[1])[:15]
        },
    }
    return out


def store_check(windows: int = 4) -> dict:
    """The float8 K/V store kernel vs ``store_reference`` on the GPU: bytes, scales, time."""
    L, H, D, T = LARGE_V3.decoder_layers, LARGE_V3.decoder_attention_heads, 64, 1500
    kv = torch.randn(windows, T, L, 2, H, D, device="cuda", dtype=torch.bfloat16)
    kv[:, 100:110] *= 40
    outs = [
        [
            torch.zeros(L, windows, H, T, D, device="cuda", dtype=torch.float8_e4m3fn)
            for _ in range(2)
        ]
        + [torch.ones(L, windows, H, T, device="cuda") for _ in range(2)]
        for _ in range(2)
    ]
    times = []
    for fn, (k, v, ks, vs) in zip((triton_store, store_reference), outs):
        times.append(_time_ms(lambda: fn(kv, k, v, 0, ks, vs), 5))
    (k1, v1, ks1, vs1), (k2, v2, ks2, vs2) = outs
    row = {
        "check": "float8 K/V store kernel vs torch reference",
        "bytes_differ": int(
            (k1.view(torch.uint8) != k2.view(torch.uint8)).sum()
            + (v1.view(torch.uint8) != v2.view(torch.uint8)).sum()
        ),
        "of": 2 * k1.numel(),
        "scale_max_err": float(max((ks1 - ks2).abs().max(), (vs1 - vs2).abs().max())),
        "kernel_ms_per_window": round(times[0] / windows, 3),
        "reference_ms_per_window": round(times[1] / windows, 3),
    }
    print(json.dumps(row), flush=True)
    return row


def encoder_variants() -> list[dict]:
    """Windows per second of the encoder alone, eager and each layer torch.compile'd, at
    encoder batches 32 and 64."""
    out = []
    for compiled in (False, True):
        model = WhisperTorch(LARGE_V3).to("cuda", torch.bfloat16).eval()
        enc = model.model.encoder
        if compiled:
            for layer in enc.layers:
                layer.compile(dynamic=False)
        with torch.inference_mode():
            for batch in (32, 64):
                mel = torch.randn(
                    batch, model.dims.num_mel_bins, 3000, device="cuda", dtype=torch.bfloat16
                )
                t0 = time.perf_counter()
                enc(mel)
                first_s = time.perf_counter() - t0
                ms = _time_ms(lambda: enc(mel), 5)
                name = "compiled" if compiled else "eager"
                out.append(
                    {
                        "profile": f"encoder {name}, batch {batch}",
                        "windows_per_s": round(batch * 1e3 / ms, 1),
                        "first_call_s": round(first_s, 1),
                    }
                )
                print(json.dumps(out[-1]), flush=True)
        del model, enc
        torch.cuda.empty_cache()
    return out


def kernel_sweep(rows: int = 256, heads: int = 20, dh: int = 64, frames: int = 1500) -> list[dict]:
    """fp8 cross-attention of ``rows`` rows over all frames, by BLOCK / num_warps / num_stages."""
    k, ks = quantize(torch.randn(rows, heads, frames, dh, device="cuda", dtype=torch.bfloat16))
    v, vs = quantize(torch.randn(rows, heads, frames, dh, device="cuda", dtype=torch.bfloat16))
    q = torch.randn(rows, heads, dh, device="cuda", dtype=torch.bfloat16)
    slot = torch.randperm(rows, device="cuda")
    ranges = torch.tensor([[0, frames, frames, frames]] * rows, device="cuda")
    o = torch.empty_like(q)
    gbytes = (k.numel() + v.numel() + 8 * ks.numel()) / 1e9
    out = []
    for block in (64, 128, 256):
        for warps in (2, 4, 8):
            for stages in (1, 2, 3):

                def run():
                    _attend_kernel[(rows, heads)](
                        q,
                        k,
                        v,
                        ks,
                        vs,
                        slot,
                        ranges,
                        o,
                        q.stride(0),
                        q.stride(1),
                        k.stride(0),
                        k.stride(1),
                        k.stride(2),
                        ks.stride(0),
                        ks.stride(1),
                        o.stride(0),
                        o.stride(1),
                        0.125,
                        D=dh,
                        BLOCK=block,
                        N_BLOCKS=math.ceil(frames / block),
                        SCALED=True,
                        FIXED=False,
                        num_warps=warps,
                        num_stages=stages,
                    )

                try:
                    ms = _time_ms(run, 30)
                except Exception as exc:
                    out.append(
                        {"block": block, "warps": warps, "stages": stages, "error": repr(exc)[:100]}
                    )
                    continue
                out.append(
                    {
                        "block": block,
                        "warps": warps,
                        "stages": stages,
                        "ms": round(ms, 4),
                        "GBps": round(gbytes / ms * 1e3),
                    }
                )
    best = min((r for r in out if "ms" in r), key=lambda r: r["ms"])
    print(
        json.dumps(
            {
                "profile": "span kernel sweep (fp8, all frames)",
                "current": [BLOCK, WARPS, 1],
                "best": best,
                "all": out,
            }
        ),
        flush=True,
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--tokenizer",
        type=Path,
        default=Path("/opt/hpc-models/faster-whisper-tiny.en/tokenizer.json"),
    )
    p.add_argument("--clips", type=int, default=240)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument(
        "--sweep", action="store_true", help="also sweep the span kernel's launch settings"
    )
    p.add_argument(
        "--encoder", action="store_true", help="also time the encoder alone, eager vs compiled"
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results = [store_check()]
    torch.manual_seed(0)
    clips = synthetic_day(args.clips)
    model = WhisperTorch(LARGE_V3)
    vocab = load_vocab(args.tokenizer, [], [220, 50256], LARGE_V3.vocab_size)
    engine = TorchWhisperEngine(
        EngineOptions("", "", batch_size=args.batch, device="cuda"),
        model=model,
        vocab=vocab,
        decode_options=DecodeOptions(temperatures=(0.0,), cross_fp8=True, compile_encoder=True),
        bench_tokens_per_s=3.0,
    )
    engine_pass(engine, clips[: args.batch])
    results.append(profile_engine(engine, clips))
    print(json.dumps(results[-1]), flush=True)
    results.append(
        {"profile": "engine pass, no profiler", "wall_s": round(engine_pass(engine, clips), 3)}
    )
    print(json.dumps(results[-1]), flush=True)
    if args.sweep:
        results += kernel_sweep()
    del engine
    torch.cuda.empty_cache()
    if args.encoder:
        results += encoder_variants()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
