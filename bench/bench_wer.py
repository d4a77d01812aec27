"""WER of the torch engine (greedy or beam search; chunks packed into shared windows or not,
cross-attention K/V in float8 or not) vs the WhisperX engine (greedy and beam search) on the
same weights and espeak-ng speech.

Both engines read the same faster-whisper dir (tiny.en by default) through the engine
interface that ``audio_hpc.process`` uses, on CPU. Also prints the text-token rate of the
references (tokens per second of audio), which calibrates bench_gpu_throughput.py.

    /opt/hpc-venv/bin/python bench/bench_wer.py --clips 24
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from audio_hpc.engines.base import DecodedClip, EngineOptions, load_engine  # noqa: E402
from audio_hpc.engines.torch_decode import DecodeOptions  # noqa: E402
from audio_hpc.engines.torch_engine import TorchWhisperEngine  # noqa: E402
from audio_hpc.engines.torch_pack import Packing  # noqa: E402
from espeak_clips import corpus  # noqa: E402
from wer_score import corpus_wer  # noqa: E402

TORCH_VARIANTS = {  # chunks packed into shared windows, float8 cross K/V (the CUDA default)
    "unpacked": (Packing(), False),
    "unpacked+fp8": (Packing(), True),
    "packed": (Packing(enabled=True), False),
    "packed+fp8": (Packing(enabled=True), True),
}


def run_engine(name: str, options: EngineOptions, clips: list, variant: str = "") -> dict:
    """Transcribe every clip; return WER, wall time and the hypotheses."""
    t0 = time.perf_counter()
    if name == "torch":
        packing, fp8 = TORCH_VARIANTS[variant]
        engine = TorchWhisperEngine(
            options, packing=packing, decode_options=DecodeOptions(cross_fp8=fp8)
        )
    else:
        engine = load_engine(name, options)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hyps = {
        c.clip_id: o
        for c, o in engine.transcribe_stream(
            DecodedClip(f"{i}", c.audio) for i, c in enumerate(clips)
        )
    }
    wall = time.perf_counter() - t0
    texts = [
        h.text if not isinstance(h, Exception) else ""
        for h in (hyps[f"{i}"] for i in range(len(clips)))
    ]
    return {
        "engine": name,
        "variant": variant,
        "compute_type": options.compute_type,
        "beam_size": options.beam_size,
        "wer": round(100 * corpus_wer((c.text, t) for c, t in zip(clips, texts)), 2),
        "failed": sum(isinstance(h, Exception) for h in hyps.values()),
        "load_s": round(load_s, 1),
        "wall_s": round(wall, 1),
        "hypotheses": texts,
    }


def rescore(paths: list[Path]) -> None:
    """WER of each run from its stored hypotheses, as published numbers count it."""
    for path in paths:
        doc = json.loads(path.read_text())
        for r in doc["runs"]:
            r.setdefault("wer_before_jiwer", r["wer"])
            r["wer"] = round(100 * corpus_wer(zip(doc["references"], r["hypotheses"])), 2)
            print(
                f"{path.name:<40} {r['engine']:<9} {r['variant']:<13} {r['compute_type']:<8} "
                f"beam {r['beam_size']}  WER {r['wer_before_jiwer']:6.2f} -> {r['wer']:6.2f} %"
            )
        path.write_text(json.dumps(doc, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models-dir", default="/opt/hpc-models")
    p.add_argument("--model", default="faster-whisper-tiny.en")
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--whisperx-compute", default="int8,float32")
    p.add_argument("--beams", default="1,5", help="WhisperX beam sizes")
    p.add_argument("--torch-beams", default="1", help="torch engine beam sizes")
    p.add_argument(
        "--torch-variants", default=",".join(TORCH_VARIANTS), help=", ".join(TORCH_VARIANTS)
    )
    p.add_argument("--min-s", type=float, default=10.0, help="shortest clip")
    p.add_argument("--max-s", type=float, default=60.0, help="longest clip")
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--rescore",
        type=Path,
        nargs="*",
        help="re-score the hypotheses of committed "
        "result files with wer_score (kept before as wer_before_jiwer), then stop",
    )
    args = p.parse_args()
    if args.rescore:
        rescore(args.rescore)
        return
    clips = corpus(args.clips, args.min_s, args.max_s)
    audio_s = sum(c.duration_s for c in clips)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(args.models_dir) / args.model / "tokenizer.json"))
    tokens = sum(len(tok.encode(" " + c.text).ids) for c in clips)
    print(
        f"{len(clips)} clips, {audio_s:.0f} s of audio, {tokens / audio_s:.2f} reference "
        f"text tokens per audio second",
        flush=True,
    )
    runs = []
    for beam in map(int, filter(None, args.torch_beams.split(","))):
        for variant in filter(None, args.torch_variants.split(",")):
            runs.append(
                run_engine(
                    "torch",
                    EngineOptions(
                        args.models_dir,
                        args.model,
                        batch_size=8 * beam,
                        device="cpu",
                        compute_type="float32",
                        beam_size=beam,
                    ),
                    clips,
                    variant,
                )
            )
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "hypotheses"}), flush=True)
    for beam in map(int, filter(None, args.beams.split(","))):
        for compute in args.whisperx_compute.split(","):
            runs.append(
                run_engine(
                    "whisperx",
                    EngineOptions(
                        args.models_dir,
                        args.model,
                        batch_size=8,
                        device="cpu",
                        compute_type=compute,
                        beam_size=beam,
                    ),
                    clips,
                )
            )
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "hypotheses"}), flush=True)
    for r in runs:
        print(
            f"{r['engine']:<9} {r['variant']:<19} {r['compute_type']:<8} beam {r['beam_size']}  WER {r['wer']:6.2f} %  "
            f"failed {r['failed']}  {audio_s / r['wall_s']:7.1f} audio-s/s on CPU"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "audio_s": audio_s,
                    "tokens_per_audio_s": tokens / audio_s,
                    "references": [c.text for c in clips],
                    "voices": [[c.voice, c.speed] for c in clips],
                    "runs": runs,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
