"""End to end on one GPU node: ``audio_hpc.process``'s shard path over a day of compressed clips.

What a SLURM array task does, timed: the shard's decode pool (PyAV in worker processes, or
FFmpeg subprocesses where PyAV is absent) turns AAC clips (44.1 kHz stereo, 10-60 s) into
16 kHz mono, the torch engine transcribes them batched across clips, every result is an
fsynced JSON line and the shard writes its summary. Only the model differs from production:
a Whisper-shaped model with random weights (``--shape large-v3`` or ``large-v3-turbo``), decoding
a fixed 3.0 text tokens per audio second as ``bench_gpu_throughput.py`` does, since random
weights never end a text. The engine is built once (model, CUDA graphs, compiled encoder:
``setup_s``) and reused by one shard run per decode-worker count, so each run measures the
steady shard: audio seconds per wall second from the shard's own summary, the GPU's busy
fraction (NVML, sampled every 50 ms) and decoding alone at the same worker count.

    python3 bench/bench_shard_e2e.py --clips 480 --workers 1,4,8,16 --json e2e.json
    python3 bench/bench_shard_e2e.py --tiny --clips 6 --unique 3 --workers 1,2   # CPU smoke test
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import platform
import shutil
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from audio_hpc import process  # (light: decode workers are spawned and re-import this file)
from audio_hpc.contract import Clip, Manifest, Shard, day_dir, results_dir
from audio_hpc.decode import DecodeJob, DecodePool

REPO = Path(__file__).resolve().parents[1]

DATE = "2026-12-01"
PLAN = "bench-e2e"


def encode_clip(audio: np.ndarray, path: Path, rate: int = 44_100, bitrate: int = 96_000) -> int:
    """One clip as AAC in .m4a, 44.1 kHz stereo (what recorders write); returns its bytes."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate, layout="stereo")
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(
            audio[None, :].astype(np.float32), format="flt", layout="mono"
        )
        frame.sample_rate = 16_000
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        for chunk in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(chunk):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path.stat().st_size


def make_day(root: Path, clips: int, unique: int, workers: int) -> tuple[Manifest, float]:
    """``unique`` synthetic clips encoded in parallel, copied to ``clips`` files; the manifest
    of one shard holding them all. Returns it and the day's seconds of audio."""
    from bench_gpu_throughput import synthetic_day

    audio = synthetic_day(unique)
    folder = Path(day_dir(str(root), DATE)) / "audio"
    shutil.rmtree(folder.parent, ignore_errors=True)
    folder.mkdir(parents=True)
    names = [f"u{i:04d}.m4a" for i in range(unique)]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(encode_clip, audio, [folder / n for n in names]))
    listed, audio_s = [], 0.0
    for i in range(clips):
        name = f"clip_{i:05d}.m4a"
        shutil.copyfile(folder / names[i % unique], folder / name)
        listed.append(
            Clip(
                clip_id=f"{DATE}/{name}",
                name=name,
                source_path=name,
                size=(folder / name).stat().st_size,
            )
        )
        audio_s += len(audio[i % unique]) / 16_000
    for n in names:
        (folder / n).unlink()
    manifest = Manifest(
        date=DATE, plan_id=PLAN, source="synthetic", shards=[Shard(0, listed)], listed=clips
    )
    (folder.parent / "manifest.json").write_text(manifest.to_json())
    return manifest, audio_s


class GpuBusy:
    """Mean NVML GPU utilisation (the share of time a kernel ran) while the block runs, and
    when the GPU first got busy (how long the shard's first batch waited for decoding)."""

    def __init__(self, period: float = 0.05) -> None:
        self.period, self.samples = period, []
        self.start = time.perf_counter()
        self._stop = threading.Event()
        self._nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVIDIA GPU (the CPU smoke test)
            pass

    def __enter__(self) -> GpuBusy:
        self.start = time.perf_counter()
        if self._nvml:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.samples.append(
                (
                    time.perf_counter() - self.start,
                    self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu,
                )
            )

    @property
    def fraction(self) -> float | None:
        return (
            round(float(np.mean([u for _, u in self.samples])) / 100, 3) if self.samples else None
        )

    @property
    def first_busy_s(self) -> float | None:
        """Seconds from the start to the first sample with a kernel running."""
        return next((round(t, 2) for t, u in self.samples if u > 0), None)


class BenchShard(process.ShardRun):
    """The production shard, handed an engine already built (random weights, fixed lengths)."""

    def __init__(self, args, manifest: Manifest, engine) -> None:
        super().__init__(args, manifest)
        self.engine = engine

    def _load_engine(self):
        return self.engine


def build_engine(shape: str, batch: int, device: str, tokens_per_s: float, tokenizer: Path):
    """The torch engine with the CUDA defaults (float8 cross K/V, compiled encoder), warmed up."""
    import torch

    from audio_hpc.engines.base import DecodedClip, EngineOptions
    from audio_hpc.engines.torch_checkpoint import load_vocab
    from audio_hpc.engines.torch_decode import DecodeOptions
    from audio_hpc.engines.torch_engine import TorchWhisperEngine
    from audio_hpc.engines.torch_model import WhisperTorch
    from bench_gpu_throughput import SHAPES, synthetic_day

    torch.manual_seed(0)
    dims = SHAPES[shape]
    cuda = device == "cuda"  # random weights fail every guard: no temperature fallback
    engine = TorchWhisperEngine(
        EngineOptions("", "", batch_size=batch, device=device),
        model=WhisperTorch(dims),
        decode_options=DecodeOptions(temperatures=(0.0,), cross_fp8=cuda, compile_encoder=cuda),
        vocab=load_vocab(tokenizer, [], [220, 50256], dims.vocab_size),
        bench_tokens_per_s=tokens_per_s,
    )
    warm = synthetic_day(min(batch, 32), seed=1)
    list(engine.transcribe_stream(DecodedClip(f"w{i}", a) for i, a in enumerate(warm)))
    return engine


def decode_only(root: Path, manifest: Manifest, workers: int) -> dict:
    """The decode pool alone: its audio seconds per wall second at this worker count."""
    folder = Path(day_dir(str(root), DATE)) / "audio"
    jobs = [DecodeJob(c.clip_id, folder / c.name) for c in manifest.clips]
    t0 = time.perf_counter()
    with DecodePool(jobs, workers, 600) as pool:
        audio_s = sum(o.duration_s for _, o in pool if hasattr(o, "duration_s"))
        processes = pool.processes
    wall = time.perf_counter() - t0
    return {"decode_only_audio_s_per_s": round(audio_s / wall, 1), "decode_in_processes": processes}


def run_shard(
    root: Path, manifest: Manifest, engine, workers: int, shape: str, idle_start: int | None = None
) -> dict:
    """One shard run; ``idle_start`` overrides the engine's (``max_chunks``: the old rule,
    the first batch waits for a full batch of chunks)."""
    shutil.rmtree(results_dir(str(root), DATE, PLAN), ignore_errors=True)
    default_idle_start = engine.idle_start
    engine.idle_start = idle_start or default_idle_start
    args = process.parse_args(
        [
            "--date",
            DATE,
            "--shard",
            "0",
            "--staging-root",
            str(root),
            "--plan-id",
            PLAN,
            "--models-dir",
            "",
            "--model",
            f"random-{shape}",
            "--engine",
            "torch",
            "--workers",
            str(workers),
            "--progress-interval",
            "3600",
        ]
    )
    try:
        with GpuBusy() as busy:
            summary = BenchShard(args, manifest, engine).run()
    finally:
        engine.idle_start = default_idle_start
    lines = (Path(results_dir(str(root), DATE, PLAN)) / "shard-0000.jsonl").read_text().splitlines()
    return {
        "workers": workers,
        "clips": summary.clips,
        "ok": summary.ok,
        "failed": summary.failed,
        "failed_by_reason": summary.failed_by_reason,
        "result_lines": len(lines),
        "audio_s": summary.audio_s,
        "wall_s": summary.wall_s,
        "audio_s_per_s": summary.rtf,
        "gpu_busy": busy.fraction,
        "gpu_first_busy_s": busy.first_busy_s,
        "idle_start": idle_start or default_idle_start,
        "device": summary.device,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--root", type=Path, default=Path("/tmp/bench-e2e"))
    p.add_argument("--clips", type=int, default=480)
    p.add_argument("--unique", type=int, default=60, help="distinct clips encoded (then copied)")
    p.add_argument("--workers", default="1,4,8,16")
    p.add_argument("--shape", default="large-v3", help="large-v3 | large-v3-turbo")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--tokens-per-s", type=float, default=3.0)
    p.add_argument(
        "--tokenizer",
        type=Path,
        default=Path("/opt/hpc-models/faster-whisper-tiny.en/tokenizer.json"),
    )
    p.add_argument(
        "--full-first",
        action="store_true",
        help="also run the most workers with the old rule: the first batch waits "
        "for a full batch of chunks (A/B of the engine's idle_start)",
    )
    p.add_argument("--tiny", action="store_true", help="tiny model on CPU: a smoke test")
    p.add_argument("--watchdog", type=float, help="print every thread's stack every S seconds")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.watchdog:
        faulthandler.dump_traceback_later(args.watchdog, repeat=True)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = "tiny" if args.tiny else args.shape
    worker_counts = [int(w) for w in args.workers.split(",")]
    env = {
        "device": torch.cuda.get_device_name(0)
        if device == "cuda"
        else platform.processor() or "cpu",
        "cpus": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "shape": shape,
        "batch": args.batch,
        "tokens_per_s": args.tokens_per_s,
        "argv": sys.argv,
    }
    print(json.dumps(env), flush=True)
    t0 = time.perf_counter()
    manifest, audio_s = make_day(args.root, args.clips, args.unique, max(worker_counts))
    env.update(
        day_clips=args.clips,
        day_audio_s=round(audio_s, 1),
        day_bytes=sum(c.size for c in manifest.clips),
        make_day_s=round(time.perf_counter() - t0, 1),
    )
    t0 = time.perf_counter()
    engine = build_engine(shape, args.batch, device, args.tokens_per_s, args.tokenizer)
    env["setup_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(env), flush=True)
    runs = []
    for workers in worker_counts:
        row = run_shard(args.root, manifest, engine, workers, shape)
        row.update(decode_only(args.root, manifest, workers))
        runs.append(row)
        print(json.dumps(row), flush=True)
        if args.json:  # a command stopped at its time limit keeps the rows so far
            args.json.write_text(json.dumps({"env": env, "runs": runs}, indent=1))
    if args.full_first:
        row = run_shard(
            args.root,
            manifest,
            engine,
            max(worker_counts),
            shape,
            idle_start=engine.decoder.max_chunks,
        )
        row.update(decode_only_audio_s_per_s=None)
        runs.append(row)
        print(json.dumps(row), flush=True)
    print(
        f"\nshard end to end, {shape} shape, {args.clips} AAC clips ({audio_s:.0f} audio-s), "
        f"{env['device']}, {env['cpus']} CPUs"
    )
    print(
        f"{'workers':>7} {'idle start':>10} {'audio-s/s':>10} {'GPU busy':>9} {'GPU from':>9} "
        f"{'decode alone':>13} {'ok':>5} {'failed':>6}"
    )
    for r in runs:
        print(
            f"{r['workers']:>7} {r['idle_start']:>10} {r['audio_s_per_s']:>10} "
            f"{r['gpu_busy'] or '-':>9} {r['gpu_first_busy_s'] or '-':>9} "
            f"{r['decode_only_audio_s_per_s'] or '-':>13} {r['ok']:>5} {r['failed']:>6}"
        )
    if args.json:
        args.json.write_text(json.dumps({"env": env, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
