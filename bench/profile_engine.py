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

from bench_gpu_throughput import LARGE_V3, _time_ms, synthetic_day, sync
from engines.base import DecodedClip, EngineOptions
from engines.torch_attention import BLOCK, WARPS, _attend_kernel, quantize, store_reference, triton_store
from engines.torch_checkpoint import load_vocab
from engines.torch_decode import DecodeOptions
from engines.torch_fp8 import encoder_to_fp8
from engines.torch_engine import TorchWhisperEngine
from engines.torch_model import WhisperTorch

KINDS = (("span attention", ("_attend_kernel",)), ("encoder attention", ("flash", "fmha", "cudnn", "attention")),
         ("matrix products", ("gemm", "nvjet", "cutlass", "sm90", "xmma", "cublas")),
         ("reductions", ("reduce", "softmax", "norm", "argmax", "max")),
         ("elementwise", ("elementwise", "vectorized", "gelu", "copy", "fill", "index", "scatter", "gather", "cat")))


def kind(name: str) -> str:
    low = name.lower()
    return next((k for k, keys in KINDS if any(key in low for key in keys)), "other")


def busy_union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, -math.inf
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def engine_pass(engine: TorchWhisperEngine, clips: list[np.ndarray]) -> float:
    sync()
    t0 = time.perf_counter()
    list(engine.transcribe_stream(DecodedClip(f"c{i}", a) for i, a in enumerate(clips)))
    sync()
    return time.perf_counter() - t0


def profile_engine(engine: TorchWhisperEngine, clips: list[np.ndarray]) -> dict:
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        wall = engine_pass(engine, clips)
    kernels, by_kind, host_wait = [], defaultdict(float), defaultdict(float)
    names = defaultdict(float)
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            kernels.append((e.time_range.start, e.time_range.end))
            by_kind[kind(e.name)] += e.time_range.elapsed_us()
            names[e.name[:160]] += e.time_range.elapsed_us()
        elif e.name in ("cudaStreamSynchronize", "cudaEventSynchronize", "cudaDeviceSynchronize",
                        "cudaMemcpyAsync", "cudaGraphLaunch", "cudaLaunchKernel", "cudaHostAlloc"):
            host_wait[e.name] += e.time_range.elapsed_us()
    out = {"profile": "engine pass", "wall_s": round(wall, 3),
           "gpu_busy_s": round(busy_union(kernels) / 1e6, 3),
           "kernel_s_by_kind": {k: round(v / 1e6, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
           "host_api_s": {k: round(v / 1e6, 3) for k, v in host_wait.items()},
           "top_kernels_s": {k: round(v / 1e6, 3) for k, v in sorted(names.items(), key=lambda kv: -kv[1])[:15]}}
    return out


def store_check(windows: int = 4) -> dict:
    """The float8 K/V store kernel vs ``store_reference`` on the GPU: bytes, scales, time."""
    L, H, D, T = LARGE_V3.decoder_layers, LARGE_V3.decoder_attention_heads, 64, 1500
    kv = torch.randn(windows, T, L, 2, H, D, device="cuda", dtype=torch.bfloat16)
    kv[:, 100:110] *= 40
    outs = [[torch.zeros(L, windows, H, T, D, device="cuda", dtype=torch.float8_e4m3fn) for _ in range(2)]
            + [torch.ones(L, windows, H, T, device="cuda") for _ in range(2)] for _ in range(2)]
    times = []
    for fn, (k, v, ks, vs) in zip((triton_store, store_reference), outs):
        times.append(_time_ms(lambda: fn(kv, k, v, 0, ks, vs), 5))
    (k1, v1, ks1, vs1), (k2, v2, ks2, vs2) = outs
    row = {"check": "float8 K/V store kernel vs torch reference",
           "bytes_differ": int((k1.view(torch.uint8) != k2.view(torch.uint8)).sum()
                               + (v1.view(torch.uint8) != v2.view(torch.uint8)).sum()),
           "of": 2 * k1.numel(), "scale_max_err": float(max((ks1 - ks2).abs().max(), (vs1 - vs2).abs().max())),
           "kernel_ms_per_window": round(times[0] / windows, 3),
           "reference_ms_per_window": round(times[1] / windows, 3)}
    print(json.dumps(row), flush=True)
    return row


def encoder_variants() -> list[dict]:
    """Windows per second of the encoder alone: eager, each layer torch.compile'd, and
    compiled with float8 matrix products; at encoder batches 32 and 64."""
    out = []
    for fp8, compiled in ((False, False), (False, True), (True, True)):
        model = WhisperTorch(LARGE_V3).to("cuda", torch.bfloat16).eval()
        enc = model.model.encoder
        if fp8:
            encoder_to_fp8(enc)
        if compiled:
            for layer in enc.layers:
                layer.compile(dynamic=False)
        with torch.inference_mode():
            for batch in (32, 64):
                mel = torch.randn(batch, model.dims.num_mel_bins, 3000, device="cuda", dtype=torch.bfloat16)
                t0 = time.perf_counter()
                enc(mel)
                first_s = time.perf_counter() - t0
                ms = _time_ms(lambda: enc(mel), 5)
                name = ("compiled" if compiled else "eager") + (", float8 matmuls" if fp8 else "")
                out.append({"profile": f"encoder {name}, batch {batch}",
                            "windows_per_s": round(batch * 1e3 / ms, 1), "first_call_s": round(first_s, 1)})
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
                        q, k, v, ks, vs, slot, ranges, o, q.stride(0), q.stride(1), k.stride(0),
                        k.stride(1), k.stride(2), ks.stride(0), ks.stride(1), o.stride(0), o.stride(1),
                        0.125, D=dh, BLOCK=block, N_BLOCKS=math.ceil(frames / block), SCALED=True,
                        FIXED=False, num_warps=warps, num_stages=stages)
                try:
                    ms = _time_ms(run, 30)
                except Exception as exc:
                    out.append({"block": block, "warps": warps, "stages": stages, "error": repr(exc)[:100]})
                    continue
                out.append({"block": block, "warps": warps, "stages": stages, "ms": round(ms, 4),
                            "GBps": round(gbytes / ms * 1e3)})
    best = min((r for r in out if "ms" in r), key=lambda r: r["ms"])
    print(json.dumps({"profile": "span kernel sweep (fp8, all frames)", "current": [BLOCK, WARPS, 1],
                      "best": best, "all": out}), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", type=Path, default=Path("/opt/hpc-models/faster-whisper-tiny.en/tokenizer.json"))
    p.add_argument("--clips", type=int, default=240)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--encoder-fp8", action="store_true", help="float8 encoder matrix products")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results = [store_check()]
    torch.manual_seed(0)
    clips = synthetic_day(args.clips)
    model = WhisperTorch(LARGE_V3)
    vocab = load_vocab(args.tokenizer, [], [220, 50256], LARGE_V3.vocab_size)
    engine = TorchWhisperEngine(EngineOptions("", "", batch_size=args.batch, device="cuda"), model=model,
                                vocab=vocab, decode_options=DecodeOptions(temperatures=(0.0,), cross_fp8=True,
                                                                           compile_encoder=True,
                                                                           encoder_fp8=args.encoder_fp8),
                                bench_tokens_per_s=3.0)
    engine_pass(engine, clips[:args.batch])
    results.append(profile_engine(engine, clips))
    print(json.dumps(results[-1]), flush=True)
    results.append({"profile": "engine pass, no profiler", "wall_s": round(engine_pass(engine, clips), 3)})
    print(json.dumps(results[-1]), flush=True)
    results += kernel_sweep()
    del engine
    torch.cuda.empty_cache()
    results += encoder_variants()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
