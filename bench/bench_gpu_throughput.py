"""Throughput of the torch engine vs the transformers ASR pipeline, one synthetic day, one run.

Both recipes get the same clips (10-60 s of speech-like bursts and pauses) and a Whisper
large-v3-shaped model (or large-v3-turbo's: 4 decoder layers) with random weights. Random
weights never emit end-of-text, so the decode length is fixed to a realistic rate:
``--tokens-per-s`` text tokens per second of audio in each window (3.0 by default: ~150
words/min x ~1.3 BPE tokens/word; bench_wer.py prints the rate of its references). The peer
decodes every 30 s chunk for ``30 x tokens-per-s`` tokens, the same rate, because its chunks
hold 30 s of audio. The peer's decoding is set explicitly (``num_beams``, ``do_sample=False``)
and the search it actually ran is read off transformers' own methods and reported, so greedy
is compared with greedy and beam 5 with beam 5.

    python bench/bench_gpu_throughput.py --tokenizer .bench_assets/tokenizer.json \
        --batches 256/fp8,256/fp8/beam5 --peer 24/greedy,128/greedy,24/beam5

prints one JSON line per run and a table; ``--json PATH`` keeps all of it (rewritten after
every run, so a run cut short keeps what finished).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from audio_hpc.engines.base import SAMPLE_RATE, DecodedClip, EngineOptions, NoSpeech  # noqa: E402
from audio_hpc.engines.torch_attention import attend, reference  # noqa: E402
from audio_hpc.engines.torch_checkpoint import Dims, load_vocab  # noqa: E402
from audio_hpc.engines.torch_decode import BatchDecoder, DecodeOptions  # noqa: E402
from audio_hpc.engines.torch_engine import TorchWhisperEngine  # noqa: E402
from audio_hpc.engines.torch_model import WhisperTorch  # noqa: E402
from audio_hpc.engines.torch_pack import Packing, pack  # noqa: E402
from audio_hpc.engines.torch_vad import VadConfig, chunk  # noqa: E402

# large-v3's shape; the vocabulary is tiny.en's (51,864 vs 51,866 rows: 0.004% of the
# output layer) so both recipes can use the one tokenizer.json available offline.
LARGE_V3 = Dims(vocab_size=51864)
LARGE_V3_TURBO = replace(LARGE_V3, decoder_layers=4)  # large-v3's encoder, 4 decoder layers
TINY = Dims(
    num_mel_bins=80,
    d_model=384,
    encoder_layers=4,
    encoder_attention_heads=6,
    encoder_ffn_dim=1536,
    decoder_layers=4,
    decoder_attention_heads=6,
    decoder_ffn_dim=1536,
    vocab_size=51864,
)
SHAPES = {"large-v3": LARGE_V3, "large-v3-turbo": LARGE_V3_TURBO, "tiny": TINY}


def synthetic_day(n: int, seed: int = 0) -> list[np.ndarray]:
    """Clips of 10-60 s: syllable-rate modulated noise bursts of 1-6 s, pauses of 0.2-1.2 s."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        total = int(rng.uniform(10, 60) * SAMPLE_RATE)
        audio = rng.normal(0, 0.001, total).astype(np.float32)
        pos = int(rng.uniform(0, 1) * SAMPLE_RATE)
        while pos < total:
            burst = int(rng.uniform(1, 6) * SAMPLE_RATE)
            t = np.arange(min(burst, total - pos)) / SAMPLE_RATE
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
            audio[pos : pos + len(t)] += 0.1 * envelope * rng.normal(0, 1, len(t))
            pos += burst + int(rng.uniform(0.2, 1.2) * SAMPLE_RATE)
        clips.append(audio)
    return clips


def run_torch_engine(
    clips: list[np.ndarray],
    dims: Dims,
    vocab_path: Path,
    batch: int,
    tokens_per_s: float,
    device: str,
    fp8: bool = False,
    packed: bool = False,
    overlap: bool = True,
    compiled: bool = True,
    beam: int = 1,
    shape: str = "large-v3",
) -> dict:
    """The torch engine, bf16 on GPU, graphs captured and the encoder compiled before the
    clock starts. ``fp8``: float8 cross-attention K/V; ``packed``: chunks share windows;
    ``overlap=False``: no encoder/decoder overlap; ``compiled=False``: eager encoder;
    ``beam``: beam width (``batch`` rows hold ``batch / beam`` chunks)."""
    torch.manual_seed(0)
    model = WhisperTorch(dims)
    vocab = load_vocab(vocab_path, [], [220, 50256], dims.vocab_size)
    t0 = time.perf_counter()
    engine = TorchWhisperEngine(
        EngineOptions("", "", batch_size=batch, device=device, beam_size=beam),
        model=model,
        vocab=vocab,
        decode_options=DecodeOptions(
            temperatures=(0.0,), cross_fp8=fp8, compile_encoder=compiled and device == "cuda"
        ),
        packing=Packing(enabled=packed),
        bench_tokens_per_s=tokens_per_s,
        overlap=overlap,
    )
    setup_s = time.perf_counter() - t0
    list(
        engine.transcribe_stream(
            DecodedClip(f"w{i}", a) for i, a in enumerate(clips[: batch // beam])
        )
    )
    engine.windows, engine.window_audio_s = 0, 0.0
    sync()
    t0 = time.perf_counter()
    outcomes = list(engine.transcribe_stream(DecodedClip(f"c{i}", a) for i, a in enumerate(clips)))
    sync()
    wall = time.perf_counter() - t0
    audio_s = sum(len(a) for a in clips) / SAMPLE_RATE
    failed = [repr(o) for _, o in outcomes if isinstance(o, Exception)]
    no_speech = sum(isinstance(o, NoSpeech) for _, o in outcomes)
    windows, window_audio_s = engine.windows, engine.window_audio_s
    t0 = time.perf_counter()  # steady state: the allocator and kernels are warm now
    list(engine.transcribe_stream(DecodedClip(f"c{i}", a) for i, a in enumerate(clips)))
    sync()
    second_wall = time.perf_counter() - t0
    encoder_s = time_encoder_alone(engine, clips)
    tokens = engine_tokens(clips, engine, tokens_per_s)
    variant = ", ".join(
        name
        for name, on in (
            ("fp8 cross K/V", fp8),
            ("packed", packed),
            ("no overlap", not overlap),
            ("eager encoder", not compiled),
            (f"beam {beam}", beam > 1),
        )
        if on
    )
    variant = f" ({variant})" if variant else ""
    return {
        "recipe": f"torch engine {str(next(model.parameters()).dtype)[6:]} batch {batch}{variant}",
        "shape": shape,
        "mode": f"beam {beam}" if beam > 1 else "greedy",
        "batch": batch,
        "audio_s": round(audio_s, 1),
        "wall_s": round(wall, 2),
        "audio_s_per_s": round(audio_s / wall, 1),
        "windows": windows,
        "audio_s_per_window": round(window_audio_s / max(windows, 1), 2),
        "setup_s": round(setup_s, 1),
        "second_pass_wall_s": round(second_wall, 2),
        "second_pass_audio_s_per_s": round(audio_s / second_wall, 1),
        "encoder_alone_s": round(encoder_s, 2),
        "failed": failed[:3],
        "n_failed": len(failed),
        "tokens": tokens,
        "tokens_per_audio_s": round(tokens / audio_s, 2),
        "set": {
            "search": "beam" if beam > 1 else "greedy",
            "cache": "engine's static K/V buffers",
            "cuda_graphs": device == "cuda",
            "compiled_encoder": compiled,
        },
        "n_no_speech": no_speech,
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)
        if torch.cuda.is_available()
        else 0,
    }


def engine_tokens(clips: list[np.ndarray], engine: TorchWhisperEngine, tokens_per_s: float) -> int:
    """Text tokens the engine decodes for the day: ``tokens_per_s`` of each VAD chunk."""
    return sum(
        round(tokens_per_s * (e - s) / SAMPLE_RATE) for a in clips for s, e in chunk(a, engine.vad)
    )


def time_encoder_alone(engine: TorchWhisperEngine, clips: list[np.ndarray]) -> float:
    """Seconds the encoder alone needs for the same windows (how much of the wall it is)."""
    cut = [a[s:e] for a in clips for s, e in chunk(a, engine.vad)]
    size = engine.decoder.state.max_rows
    sync()
    t0 = time.perf_counter()
    for i in range(0, len(cut), size):
        engine.decoder.encode(pack(cut[i : i + size], engine.packing).windows)
    sync()
    return time.perf_counter() - t0


def _time_ms(fn, reps: int = 20) -> float:
    """Median milliseconds of ``fn`` on the GPU (CUDA events), after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def profile_decoder(dims: Dims, vocab_path: Path, batch: int, t: int = 128) -> list[dict]:
    """Where a decoder step's time goes, cross K/V in bf16 and in float8: one layer's
    cross-attention alone and one whole graph-replayed step (``batch`` rows, each at self-attention
    position ``t``, each reading all 1500 frames), as GB/s of the bytes a step must read; the
    kernel checked against the torch reference first; and the encoder alone at two encoder
    batch sizes. Buffers hold random values, never zeros."""
    torch.manual_seed(0)
    model = WhisperTorch(dims).to("cuda", torch.bfloat16).eval()
    vocab = load_vocab(vocab_path, [], [220, 50256], dims.vocab_size)
    L, H, D = dims.decoder_layers, dims.decoder_attention_heads, dims.d_model
    S = dims.max_source_positions
    weight_bytes = 2 * sum(
        p.numel()
        for n, p in model.model.decoder.named_parameters()
        if "encoder_attn.k_proj" not in n and "encoder_attn.v_proj" not in n
    )
    q = torch.randn(batch, H, D // H, device="cuda", dtype=torch.bfloat16)
    slot = torch.randperm(batch, device="cuda")
    full = torch.tensor([[0, S, S, S]] * batch, device="cuda")
    out = []
    for fp8 in (False, True):
        dec = BatchDecoder(
            model,
            vocab,
            batch,
            "en",
            DecodeOptions(temperatures=(0.0,), cross_fp8=fp8),
            cuda_graphs=False,
        )
        st = dec.state
        enc = torch.randn(16, S, D, device="cuda", dtype=torch.bfloat16)
        for w in range(0, batch, 16):  # cross K/V (and float8 scales) the engine's way
            st.set_cross(w, enc[: min(16, batch - w)])
        for buf in (st.self_k, st.self_v):
            buf.normal_()
        st.start([(w, 0, S, S, S) for w in range(batch)], 0)
        st.tokens.random_(0, vocab.eot)
        st.positions.fill_(t - 1)
        scales = (st.k_scale[0], st.v_scale[0]) if fp8 else ()
        ranges = torch.tensor([[0, 700, 1200, S]] * batch, device="cuda")
        got = attend(q, st.cross_k[0], st.cross_v[0], slot, ranges, *scales)
        want = reference(q, st.cross_k[0], st.cross_v[0], slot, ranges, *scales)
        cross_bytes = batch * L * 2 * S * D * (1 if fp8 else 2) + (
            batch * L * 2 * S * H * 4 if fp8 else 0
        )
        self_bytes = batch * L * 2 * t * D * 2
        row = {
            "profile": f"decoder step, cross K/V {'float8' if fp8 else 'bf16'}",
            "rows": batch,
            "t": t,
            "kernel_vs_reference_max_abs_err": round(
                float((got.float() - want.float()).abs().max()), 5
            ),
        }
        with torch.inference_mode():
            ms = _time_ms(lambda: attend(q, st.cross_k[0], st.cross_v[0], slot, full, *scales), 50)
        row["cross_attn_layer_ms"] = round(ms, 4)
        row["cross_attn_GBps"] = round(cross_bytes / L / ms / 1e6)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            st.step(batch)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):
                st.step(batch)
        torch.cuda.current_stream().wait_stream(stream)
        ms = _time_ms(graph.replay)
        total = cross_bytes + self_bytes + weight_bytes
        row.update(
            step_ms=round(ms, 3),
            us_per_row=round(1000 * ms / batch, 1),
            step_GBps=round(total / ms / 1e6),
            cross_share_of_bytes=round(cross_bytes / total, 3),
        )
        out.append(row)
        print(json.dumps(row), flush=True)
        del graph, dec, st
        torch.cuda.empty_cache()
    dec = BatchDecoder(model, vocab, 8, "en", DecodeOptions(temperatures=(0.0,)), cuda_graphs=False)
    rng = np.random.default_rng(0)
    windows = [rng.normal(0, 0.1, 30 * SAMPLE_RATE).astype(np.float32) for _ in range(128)]
    for eb in (32, 64):
        dec.options = DecodeOptions(temperatures=(0.0,), encoder_batch=eb)
        ms = _time_ms(lambda: dec.encode(windows).ready.synchronize(), 3)
        out.append(
            {"profile": f"encoder alone, encoder batch {eb}", "windows_per_s": round(128e3 / ms, 1)}
        )
        print(json.dumps(out[-1]), flush=True)
    return out


def gpu_health() -> dict:
    """The card's two ceilings as found: a bf16 8192^3 matrix product on random data and a
    1 GiB device-to-device copy (bytes read + written). A slow card shows here first."""
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    ms = _time_ms(lambda: a @ b, 10)
    src = torch.randn(2**28, device="cuda")
    dst = torch.empty_like(src)
    copy_ms = _time_ms(lambda: dst.copy_(src), 10)
    return {
        "check": "gpu ceilings",
        "bf16_matmul_TFLOPs": round(2 * 8192**3 / ms / 1e9),
        "copy_GBps": round(2 * src.numel() * 4 / copy_ms / 1e6),
    }


def check_graphs(clips: list[np.ndarray], dims: Dims, vocab_path: Path) -> dict:
    """CUDA-graph decoding vs eager decoding of the same 16 windows: same tokens?"""
    torch.manual_seed(0)
    model = WhisperTorch(dims).to("cuda", torch.bfloat16).eval()
    vocab = load_vocab(vocab_path, [], [220, 50256], dims.vocab_size)
    layout = pack(
        [a[: 10 * SAMPLE_RATE] for a in clips[:16]], Packing(enabled=True)
    )  # 2 per window
    lengths = [20 + 4 * i for i in range(16)]  # rows end at different steps
    tokens = []
    for graphs in (True, False):
        dec = BatchDecoder(
            model, vocab, 16, "en", DecodeOptions(temperatures=(0.0,)), cuda_graphs=graphs
        )
        tokens.append([d.tokens for d in dec.decode(layout, fixed_tokens=lengths)])
        del dec
    same = sum(a == b for g, e in zip(*tokens) for a, b in zip(g, e))
    return {
        "check": "graph vs eager greedy tokens",
        "agree": same,
        "of": sum(lengths),
        "first_rows_identical": sum(g == e for g, e in zip(*tokens)),
    }


def run_peer(
    clips: list[np.ndarray],
    dims: Dims,
    vocab_path: Path,
    batch: int,
    tokens_per_s: float,
    device: str,
    beams: int = 1,
    shape: str = "large-v3",
) -> dict:
    """transformers' ASR pipeline: 30 s chunks (5 s strides), batch ``batch``, fp16, SDPA;
    greedy (``beams`` 1) or beam search, set explicitly: a generation config that leaves
    ``num_beams`` unset makes transformers 5 run beam search for Whisper. Which search ran is
    counted on the model's own ``_sample`` / ``_beam_search`` methods and reported."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
        pipeline,
    )

    torch.manual_seed(0)
    dtype = torch.float16 if device == "cuda" else torch.float32
    config = WhisperConfig(
        **asdict(dims),
        decoder_start_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        bos_token_id=50256,
    )
    model = (
        WhisperForConditionalGeneration._from_config(
            config, attn_implementation="sdpa", torch_dtype=dtype
        )
        .to(device)
        .eval()
    )
    model.generation_config = GenerationConfig(
        decoder_start_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        no_timestamps_token_id=50362,
        is_multilingual=False,
        begin_suppress_tokens=[220, 50256],
        num_beams=beams,
        do_sample=False,
    )
    ran: dict[str, int] = {}
    cls, originals = type(model), {}
    for method in ("_sample", "_beam_search"):  # generate() looks them up on the class
        originals[method] = getattr(cls, method)

        def counted(self, *a, _name=method, _fn=originals[method], **k):
            ran[_name] = ran.get(_name, 0) + 1
            return _fn(self, *a, **k)

        setattr(cls, method, counted)
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(vocab_path), pad_token="<|endoftext|>")
    asr = pipeline(
        "automatic-speech-recognition",
        model=model,
        tokenizer=tokenizer,
        feature_extractor=WhisperFeatureExtractor(feature_size=dims.num_mel_bins),
        chunk_length_s=30,
        batch_size=batch,
        device=device,
        torch_dtype=dtype,
    )
    n_tokens = round(30 * tokens_per_s)
    kwargs = {
        "generate_kwargs": {
            "min_new_tokens": n_tokens,
            "max_new_tokens": n_tokens,
            "num_beams": beams,
            "do_sample": False,
        }
    }
    try:
        asr([{"raw": a, "sampling_rate": SAMPLE_RATE} for a in clips[:2]], **kwargs)  # warm-up
        sync()
        ran.clear()
        t0 = time.perf_counter()
        out = asr([{"raw": a, "sampling_rate": SAMPLE_RATE} for a in clips], **kwargs)
        sync()
        wall = time.perf_counter() - t0
    finally:
        for method, fn in originals.items():
            setattr(cls, method, fn)
    audio_s = sum(len(a) for a in clips) / SAMPLE_RATE
    mode = f"beam {beams}" if beams > 1 else "greedy"
    return {
        "recipe": f"transformers pipeline fp16 batch {batch} {mode}",
        "shape": shape,
        "mode": mode,
        "batch": batch,
        "generation_methods_ran": ran,
        "ran_as_asked": set(ran) == {"_beam_search" if beams > 1 else "_sample"},
        "audio_s": round(audio_s, 1),
        "clips": len(clips),
        "wall_s": round(wall, 2),
        "audio_s_per_s": round(audio_s / wall, 1),
        "outputs": len(out),
        "new_tokens_per_chunk": n_tokens,
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)
        if torch.cuda.is_available()
        else 0,
    }


def tuned_row(
    clips: list[np.ndarray],
    spec: str,
    vocab_path: Path,
    tokens_per_s: float,
    device: str,
    shape_of,
    peers: dict,
) -> dict:
    """One row of the tuned transformers peer (``tuned_peer.py``) for the spec
    ``BATCH[/static][/compile][/equal][/flat][/turbo]``: a static cache, generate's compile left
    on, the engine's tokens per audio second instead of the pipeline's 90 per window (equal
    work), back-to-back windows instead of the pipeline's strided ones. ``peers`` keeps the
    model of the last shape, so a sweep builds it once."""
    from tuned_peer import CUTS, PeerSettings, TunedPeer

    engine_tok = sum(
        round(tokens_per_s * (e - s) / SAMPLE_RATE) for a in clips for s, e in chunk(a, VadConfig())
    )
    audio_s = sum(len(a) for a in clips) / SAMPLE_RATE
    batch, *flags = spec.split("/")
    shape = shape_of(flags)
    cut = "flat" if "flat" in flags else "pipeline"
    windows = sum(len(CUTS[cut](a)) for a in clips)
    tokens = round(engine_tok / windows) if "equal" in flags else round(30 * tokens_per_s)
    settings = PeerSettings(
        int(batch), "static" if "static" in flags else "dynamic", "compile" in flags, tokens, cut
    )
    if shape not in peers:
        peers.clear()
        gc.collect()
        torch.cuda.empty_cache() if device == "cuda" else None
        peers[shape] = TunedPeer(
            asdict(SHAPES[shape]),
            {},
            vocab_path,
            device,
            "float16" if device == "cuda" else "float32",
        )
    label = (
        f"tuned generate b{batch} {settings.cache} cache, compile "
        f"{'on' if settings.compile else 'off'}, {tokens} tok/window, {cut} cut"
    )
    row = peers[shape].run(clips, settings, label)
    row.update(
        shape=shape,
        engine_tokens_per_audio_s=round(engine_tok / audio_s, 2),
        equal_work="equal" in flags,
    )
    return row


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def table(results: list[dict]) -> str:
    """One line per run (tokens per audio second beside the rate), then each engine run's ratio to
    the fastest pipeline row, the fastest tuned row and the fastest tuned row at equal work, of
    the same shape and search."""
    runs = [r for r in results if "recipe" in r and "audio_s_per_s" in r]
    lines = [
        f"{'shape':<15} {'recipe':<64} {'mode':<7} {'audio-s/s':>9} {'tok/aud-s':>9} "
        f"{'steady':>8} {'ran':>8}"
    ]
    for r in runs:
        ran = ",".join(r.get("observed", {}).get("methods", r.get("generation_methods_ran", {})))
        lines.append(
            f"{r['shape']:<15} {r['recipe'][:64]:<64} {r['mode']:<7} "
            f"{r['audio_s_per_s']:>9} {r.get('tokens_per_audio_s', ''):>9} "
            f"{r.get('second_pass_audio_s_per_s', ''):>8} {ran:>8}"
        )
    for r in (r for r in runs if r["recipe"].startswith("torch")):
        same = [p for p in runs if p["shape"] == r["shape"] and p["mode"] == r["mode"]]
        groups = (
            ("pipeline", [p for p in same if p["recipe"].startswith("transformers")]),
            ("tuned", [p for p in same if p["recipe"].startswith("tuned")]),
            ("tuned, equal work", [p for p in same if p.get("equal_work")]),
        )
        for name, rows in groups:
            if rows:
                best = max(rows, key=lambda p: p["audio_s_per_s"])
                lines.append(
                    f"{r['recipe']} ({r['shape']}) vs best {name} ({best['recipe']}): "
                    f"{r['audio_s_per_s'] / best['audio_s_per_s']:.2f}x"
                )
    return "\n".join(lines)


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
    p.add_argument("--tokens-per-s", type=float, default=3.0)
    p.add_argument(
        "--batches",
        default="256/fp8,256/fp8/beam5",
        help="torch engine runs: BATCH[/fp8][/packed][/serial][/eager][/beamN][/turbo]: fp8 "
        "cross-attention K/V, chunks packed into shared windows, no encoder/decoder "
        "overlap, encoder not compiled, beam search of width N (BATCH rows), "
        "large-v3-turbo's shape",
    )
    p.add_argument("--profile", action="store_true", help="profile a decoder step (GPU only)")
    p.add_argument(
        "--peer",
        default="24/greedy,128/greedy,24/beam5",
        help="peer runs: BATCH/greedy or BATCH/beamN[/turbo] (large-v3 unless /turbo)",
    )
    p.add_argument(
        "--peer-clips",
        type=int,
        help="the peer transcribes only the day's first N clips "
        "(its rate is flat in day size; a long day would take it too long)",
    )
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--no-graph-check", action="store_true", help="skip the graph-vs-eager check")
    p.add_argument(
        "--tuned",
        default="",
        help="tuned transformers peer runs (tuned_peer.py): "
        "BATCH[/static][/compile][/equal][/flat][/turbo]: static cache, generate's "
        "compile on, the engine's tokens per audio second (equal work), back-to-back "
        "30 s windows, large-v3-turbo's shape",
    )
    p.add_argument("--tiny", action="store_true", help="tiny shapes: a CPU smoke test")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    import transformers

    env = {
        "device": torch.cuda.get_device_name(0)
        if device == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "clips": args.clips,
        "tokens_per_s": args.tokens_per_s,
        "argv": sys.argv,
    }
    print(json.dumps(env), flush=True)
    clips = synthetic_day(args.clips)
    results: list[dict] = []

    def shape_of(flags: list[str]) -> str:
        return "tiny" if args.tiny else "large-v3-turbo" if "turbo" in flags else "large-v3"

    def engine_run(spec: str) -> dict:
        batch, *rest = spec.split("/")
        shape = shape_of(rest)
        return run_torch_engine(
            clips,
            SHAPES[shape],
            args.tokenizer,
            int(batch),
            args.tokens_per_s,
            device,
            fp8="fp8" in rest,
            packed="packed" in rest,
            overlap="serial" not in rest,
            compiled="eager" not in rest,
            beam=next((int(r[4:]) for r in rest if r.startswith("beam")), 1),
            shape=shape,
        )

    def peer_run(spec: str) -> dict:
        batch, *rest = spec.split("/")
        shape = shape_of(rest)
        return run_peer(
            clips[: args.peer_clips],
            SHAPES[shape],
            args.tokenizer,
            int(batch),
            args.tokens_per_s,
            device,
            beams=next((int(r[4:]) for r in rest if r.startswith("beam")), 1),
            shape=shape,
        )

    steps = [lambda spec=spec: engine_run(spec) for spec in filter(None, args.batches.split(","))]
    if device == "cuda":
        if not args.no_graph_check:
            steps.insert(0, lambda: check_graphs(clips, SHAPES[shape_of([])], args.tokenizer))
        steps.insert(0, gpu_health)
        if args.profile:
            steps.insert(
                1,
                lambda: profile_decoder(
                    SHAPES[shape_of([])],
                    args.tokenizer,
                    max(int(s.split("/")[0]) for s in args.batches.split(",")),
                ),
            )
    tuned = [s for s in args.tuned.split(",") if s]
    peers: dict = {}
    steps += [
        lambda spec=spec: tuned_row(
            clips, spec, args.tokenizer, args.tokens_per_s, device, shape_of, peers
        )
        for spec in tuned
    ]
    if not args.no_peer:
        steps += [lambda spec=spec: peer_run(spec) for spec in filter(None, args.peer.split(","))]
    for step in steps:
        try:  # one failing recipe must not cost the others' numbers (device time is scarce)
            got = step()
            results.extend(got if isinstance(got, list) else [got])
            if not isinstance(got, list):
                print(json.dumps(got), flush=True)
        except Exception:
            traceback.print_exc()
            results.append({"error": traceback.format_exc(limit=3)[-1500:]})
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        if args.json:
            args.json.write_text(json.dumps({"env": env, "results": results}, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
