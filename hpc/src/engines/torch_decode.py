"""Batched greedy decoding of 30 s windows, with Whisper's fallback and guards.

Rows of one batch decode in lock step against static K/V buffers; each row reads its own span
of an encoded window (``torch_pack``). On CUDA every step replays a captured CUDA graph for a
bucket of live rows, and finished rows are dropped from the live set (an index rewrite) so
long rows do not drag short ones' cost along. The guards are Whisper's:
a row whose text compresses too well (repetition loop) or whose mean log-probability is too
low is decoded again at the next temperature; a row whose no-speech probability is high and
whose log-probability is low is silence.
"""
from __future__ import annotations

import zlib
from contextlib import nullcontext
from dataclasses import astuple, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engines.torch_checkpoint import Vocab
from engines.torch_model import DecodeState, WhisperTorch
from engines.torch_pack import WINDOW_SAMPLES, Layout


@dataclass(frozen=True)
class DecodeOptions:
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float = 2.4
    logprob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    max_new_tokens: int = 220
    encoder_batch: int = 32
    cross_fp8: bool = False             # cross-attention K/V stored as float8 (half the bytes)
    compile_encoder: bool = False       # torch.compile the encoder layers (CUDA: +28 % windows/s)
    beam_size: int = 1                  # > 1: beam search at temperature 0 (rows per chunk)


@dataclass
class Encoded:
    """Encoder outputs of one batch, possibly still being computed on the encoder stream."""
    outputs: list[torch.Tensor]
    ready: torch.cuda.Event | None


@dataclass
class Decoded:
    text: str
    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    language: str
    temperature: float

    def silent(self, o: DecodeOptions) -> bool:
        return self.no_speech_prob > o.no_speech_threshold and self.avg_logprob < o.logprob_threshold

    def needs_fallback(self, o: DecodeOptions) -> bool:
        return not self.silent(o) and (self.compression_ratio > o.compression_ratio_threshold
                                       or self.avg_logprob < o.logprob_threshold)


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def _buckets(limit: int, first: int) -> list[int]:
    out, b = [], first
    while b < limit:
        out.append(b)
        b *= 2
    return out + [limit]


class BatchDecoder:
    """Encodes windows and decodes batches of up to ``max_batch`` rows (chunks) on one device."""

    def __init__(self, model: WhisperTorch, vocab: Vocab, max_batch: int, language: str,
                 options: DecodeOptions = DecodeOptions(), cuda_graphs: bool = True) -> None:
        """``max_batch`` rows, decoded against at most as many windows."""
        self.model, self.vocab, self.options = model, vocab, options
        self.device = next(model.parameters()).device
        self.detect_language = vocab.multilingual and not language
        self.prompt = vocab.prompt(language)
        max_len = min(len(self.prompt) + options.max_new_tokens, model.dims.max_target_positions)
        self.max_new = max_len - len(self.prompt)
        self.state = DecodeState(model, max_batch, max_len, options.cross_fp8)
        if not 1 <= options.beam_size <= max_batch:
            raise ValueError(f"beam_size {options.beam_size} must be between 1 and the batch ({max_batch})")
        self.max_chunks = max_batch // options.beam_size     # chunks per batch: a row per beam
        self.row_buckets = sorted({*_buckets(min(max_batch, 64), 8), *range(64, max_batch, 32), max_batch})
        v = model.dims.vocab_size
        bias = torch.zeros(v, device=self.device)
        bias[vocab.eot + 1:] = -torch.inf               # special and timestamp tokens
        bias[[i for i in vocab.suppress if i < v]] = -torch.inf
        self.bias = bias
        self.begin_bias = bias.clone()
        self.begin_bias[list(vocab.suppress_begin)] = -torch.inf
        self.lang_ids = torch.tensor(sorted(vocab.languages.values()), device=self.device)
        self.lang_names = {i: name for name, i in vocab.languages.items()}
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        cuda = self.device.type == "cuda"
        self.encoder_stream = torch.cuda.Stream(self.device, priority=0) if cuda else None
        self.decode_stream = torch.cuda.Stream(self.device, priority=-1) if cuda else None
        if options.compile_encoder:     # one graph for all layers; shapes fixed (encode pads)
            for layer in model.model.encoder.layers:
                layer.compile(dynamic=False)
        if cuda_graphs and cuda:
            self._capture_all()
        if cuda:
            torch.cuda.synchronize(self.device)     # buffers are used from other streams next

    def _capture_all(self) -> None:
        """Capture one graph per row bucket up front, sharing one memory pool."""
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for n in self.row_buckets:
                self.state.step(n)                  # warm-up: lazy init outside capture
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool, stream=stream):
                    out = self.state.step(n)
                self.graphs[n] = (graph, out)
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()

    def _logits(self, n: int) -> torch.Tensor:
        if not self.graphs:
            return self.state.step(n)
        graph, out = self.graphs[next(b for b in self.row_buckets if b >= n)]
        graph.replay()
        return out[:n]

    @torch.inference_mode()
    def encode(self, windows: list[np.ndarray]) -> Encoded:
        """Log-mel + encoder for ``windows``. On CUDA it is queued on a low-priority side
        stream and returns at once: the compute-bound encoder of the next batch then runs
        alongside the memory-bound decoding of this one. A compiled encoder always gets
        ``encoder_batch`` windows (zeros pad the last part), so it never recompiles."""
        dtype = next(self.model.parameters()).dtype
        step = self.options.encoder_batch
        outputs = []
        with torch.cuda.stream(self.encoder_stream) if self.encoder_stream else nullcontext():
            for i in range(0, len(windows), step):
                part = windows[i:i + step]
                rows = step if self.options.compile_encoder else len(part)
                audio = torch.zeros((rows, WINDOW_SAMPLES), dtype=torch.float32,
                                    pin_memory=self.device.type == "cuda")
                for j, w in enumerate(part):
                    audio[j, :len(w)] = torch.from_numpy(w[:WINDOW_SAMPLES])
                mel = self.model.log_mel(audio.to(self.device, non_blocking=True)).to(dtype)
                outputs.append(self.model.model.encoder(mel)[:len(part)])
            ready = self.encoder_stream.record_event() if self.encoder_stream else None
        return Encoded(outputs, ready)

    def _load_cross(self, encoded: Encoded) -> None:
        """Cross-attention K/V of every layer from the encoder outputs, into windows ``[:w]``."""
        if encoded.ready is not None:
            torch.cuda.current_stream().wait_event(encoded.ready)
        first = 0
        for out in encoded.outputs:
            if encoded.ready is not None:    # made on the side stream, read on this one
                out.record_stream(torch.cuda.current_stream())
            self.state.set_cross(first, out)
            first += len(out)

    @torch.inference_mode()
    def decode(self, layout: Layout, temperature: float = 0.0,
               fixed_tokens: list[int] | None = None, encoded: Encoded | None = None
               ) -> list[Decoded]:
        """Decode the rows of ``layout`` (<= max_batch) at one temperature.

        ``encoded``: ``encode(layout.windows)``, if already queued. ``fixed_tokens`` forces each
        row to exactly that many text tokens (end-of-text suppressed before, forced after):
        for benchmarks with random weights only.
        """
        n = len(layout.spans)
        self._load_cross(encoded or self.encode(layout.windows))
        dev, lp, st = self.device, len(self.prompt), self.state
        prompt = torch.tensor(self.prompt, device=dev)
        max_tok = torch.full((n,), self.max_new - 1, device=dev)
        min_tok = torch.zeros(n, dtype=torch.long, device=dev)
        if fixed_tokens is not None:
            max_tok = torch.tensor([min(f, self.max_new - 1) for f in fixed_tokens], device=dev)
            min_tok = max_tok.clone()
        out_tokens = torch.full((n, self.max_new), self.vocab.eot, device=dev)
        sum_lp = torch.zeros(n, device=dev)
        n_text = torch.zeros(n, dtype=torch.long, device=dev)
        no_speech = torch.zeros(n, device=dev)
        language = torch.full((n,), self.prompt[1] if self.vocab.multilingual else -1, device=dev)
        row = torch.arange(n, device=dev)         # live row -> row of the layout
        done = torch.zeros(n, dtype=torch.bool, device=dev)
        st.start([astuple(sp) for sp in layout.spans], self.prompt[0])
        live = n
        for step in range(lp + self.max_new - 1):
            logits = self._logits(live)
            if step == 0:
                no_speech[row] = logits.softmax(-1)[:, self.vocab.no_speech]
            if step < lp - 1:
                nxt = prompt[step + 1].expand(live).clone()
                if step == 0 and self.detect_language:
                    nxt = self.lang_ids[logits[:, self.lang_ids].argmax(-1)]
                    language[row] = nxt
            else:
                g = step - (lp - 1)
                logits = logits + (self.begin_bias if g == 0 else self.bias)
                logits[:, self.vocab.eot] = torch.where(g < min_tok[row], -torch.inf,
                                                        logits[:, self.vocab.eot])
                logprobs = F.log_softmax(logits, dim=-1)
                if temperature > 0:
                    nxt = torch.multinomial((logits / temperature).softmax(-1), 1)[:, 0]
                else:
                    nxt = logits.argmax(-1)
                nxt = torch.where(g >= max_tok[row], self.vocab.eot, nxt)
                alive = ~done
                sum_lp[row] += torch.where(alive, logprobs.gather(1, nxt[:, None])[:, 0], 0.0)
                is_text = alive & (nxt != self.vocab.eot)
                out_tokens[row, g] = torch.where(is_text, nxt, self.vocab.eot)
                n_text[row] += is_text.long()
                done = done | (nxt == self.vocab.eot)
            st.tokens[:live] = nxt
            st.positions[:live] = step + 1
            if step >= lp - 1 and step % 4 == 0:
                keep = torch.nonzero(~done)[:, 0]
                left = keep.numel()
                if left == 0:
                    break
                if left < live:
                    st.keep(keep)
                    row, done, live = row[keep], done[keep], left
        return self._results(out_tokens, sum_lp, n_text, no_speech, language, temperature)

    def _results(self, out_tokens: torch.Tensor, sum_lp: torch.Tensor, n_text: torch.Tensor,
                 no_speech: torch.Tensor, language: torch.Tensor, temperature: float) -> list[Decoded]:
        return [self._decoded(toks[:k], s, ns, lang, temperature)
                for toks, s, k, ns, lang in zip(out_tokens.tolist(), sum_lp.tolist(), n_text.tolist(),
                                                no_speech.tolist(), language.tolist())]

    def _decoded(self, tokens: list[int], sum_lp: float, no_speech: float, language: int,
                 temperature: float) -> Decoded:
        """A row's outcome; ``sum_lp`` includes the end-of-text token (Whisper's average)."""
        text = self.vocab.decode(tokens).strip()
        return Decoded(text=text, tokens=tokens, avg_logprob=sum_lp / (len(tokens) + 1),
                       no_speech_prob=no_speech, compression_ratio=compression_ratio(text),
                       language=self.lang_names.get(language, "en"), temperature=temperature)

    @torch.inference_mode()
    def decode_beam(self, layout: Layout, encoded: Encoded | None = None,
                    fixed_tokens: list[int] | None = None) -> list[Decoded]:
        """Beam search at temperature 0 for the rows of ``layout`` (<= ``max_chunks``);
        ``fixed_tokens`` as in ``decode`` (every beam of a chunk ends at that length).

        Why rows, not a batch dimension: each chunk decodes on ``beam_size`` rows that read its
        window's one cross K/V (the span kernel takes any window per row), so beams add rows
        (decoder steps, self-attention caches) but never copies of cross K/V. After each step
        the ``beam_size`` best continuations of a chunk take over its rows; a row continuing
        another row's hypothesis takes a copy of that row's self-attention cache. The search
        rules are CTranslate2's (so faster-whisper's, WhisperX's), not openai-whisper's: a
        continuation ending in end-of-text is kept as a hypothesis and its row goes dead, and a
        chunk stops when its *best* continuation ends (openai-whisper stops once ``beam_size``
        hypotheses ended, so short ones end the search early); the hypothesis with the best
        average log-probability per token wins.
        """
        b, n = self.options.beam_size, len(layout.spans)
        self._load_cross(encoded or self.encode(layout.windows))
        dev, lp, st = self.device, len(self.prompt), self.state
        v, eot = self.model.dims.vocab_size, self.vocab.eot
        st.start([astuple(sp) for sp in layout.spans for _ in range(b)], self.prompt[0])
        chunk = torch.arange(n, device=dev).repeat_interleave(b)        # live row -> chunk
        score = torch.full((n, b), -torch.inf, device=dev)               # per live chunk, beam
        score[:, 0] = 0.0                        # the beams of a chunk are one until it speaks
        hist = torch.full((n * b, self.max_new), eot, device=dev)       # live row's text tokens
        ended: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
        no_speech = torch.zeros(n, device=dev)
        language = torch.full((n,), self.prompt[1] if self.vocab.multilingual else -1, device=dev)
        prompt = torch.tensor(self.prompt, device=dev)
        fixed = None if fixed_tokens is None else torch.tensor(
            [min(f, self.max_new - 1) for f in fixed_tokens], device=dev)
        for step in range(lp + self.max_new - 1):
            live = chunk.numel()
            logits = self._logits(live)
            if step == 0:
                no_speech[:] = logits[::b].softmax(-1)[:, self.vocab.no_speech]
            if step < lp - 1:
                nxt = prompt[step + 1].expand(live).clone()
                if step == 0 and self.detect_language:
                    language[:] = self.lang_ids[logits[::b, self.lang_ids].argmax(-1)]
                    nxt = language.repeat_interleave(b)
                st.tokens[:live], st.positions[:live] = nxt, step + 1
                continue
            g, m = step - (lp - 1), live // b
            logprobs = F.log_softmax(logits + (self.begin_bias if g == 0 else self.bias), dim=-1)
            if fixed is not None:               # end-of-text before the length: never; at it: only
                at = (g >= fixed[chunk])[:, None]
                logprobs = torch.where(at == (torch.arange(v, device=dev) == eot), logprobs, -torch.inf)
            ids = chunk[::b].tolist()
            if g == self.max_new - 1:           # out of room: every live beam ends here
                final = (score + logprobs[:, eot].view(m, b)).tolist()
                for ci, c in enumerate(ids):
                    ended[c] += [(s, hist[ci * b + k, :g].tolist())
                                 for k, s in enumerate(final[ci]) if s > -torch.inf]
                break
            top, index = (score[:, :, None] + logprobs.view(m, b, v)).view(m, b * v).topk(b, dim=1)
            parent, tok = index // v, index % v
            rows = (torch.arange(m, device=dev)[:, None] * b + parent).view(-1)
            ends = (tok == eot) & top.isfinite()
            for ci, k in torch.nonzero(ends).tolist():
                ended[ids[ci]].append((top[ci, k].item(), hist[rows[ci * b + k], :g].tolist()))
            score, hist = top.masked_fill(tok == eot, -torch.inf), hist[rows]
            hist[:, g] = tok.view(-1)
            src, dst = st.slot[:live][rows], st.slot[:live]
            moved = src != dst
            if moved.any():                     # positions [0, step] of the parent's cache
                src, dst = src[moved], dst[moved]
                st.self_k[:, dst, :, :step + 1] = st.self_k[:, src, :, :step + 1]
                st.self_v[:, dst, :, :step + 1] = st.self_v[:, src, :, :step + 1]
            st.tokens[:live], st.positions[:live] = tok.view(-1), step + 1
            open_ = ~ends[:, 0]                 # a chunk is done when its best continuation ended
            if not open_.all():
                if not open_.any():
                    break
                stay = torch.nonzero(open_.repeat_interleave(b))[:, 0]
                st.keep(stay)
                chunk, hist, score = chunk[stay], hist[stay], score[open_]
        results = []
        for c, (ns, lang) in enumerate(zip(no_speech.tolist(), language.tolist())):
            s, tokens = max(ended[c], key=lambda e: e[0] / (len(e[1]) + 1))
            results.append(self._decoded(tokens, s, ns, lang, 0.0))
        return results

    def transcribe(self, layout: Layout, fixed_tokens: list[int] | None = None,
                   encoded: Encoded | None = None) -> list[Decoded]:
        """Greedy (or beam search) first; rows failing the guards go again, together, at each
        next temperature (sampling).
        When every temperature fails, the attempt with the best log-probability is kept."""
        with torch.cuda.stream(self.decode_stream) if self.decode_stream else nullcontext():
            return self._transcribe(layout, fixed_tokens, encoded)

    def _transcribe(self, layout: Layout, fixed_tokens: list[int] | None,
                    encoded: Encoded | None) -> list[Decoded]:
        o = self.options
        if o.beam_size > 1:
            encoded = encoded or self.encode(layout.windows)
            beamed = self.decode_beam(layout, encoded, fixed_tokens)
            # The beam can collapse onto one early branch (every row a variant of a likely
            # first word that skips a sentence) and lose the greedy path; keep greedy's text
            # when it is the likelier per token (tiny.en, 24 clips: WER 8.64 % -> 8.11 %).
            greedy = self.decode(layout, 0.0, fixed_tokens, encoded)
            best = [g if g.avg_logprob > b.avg_logprob else b for b, g in zip(beamed, greedy)]
        else:
            best = self.decode(layout, o.temperatures[0], fixed_tokens, encoded)
        todo = [i for i, d in enumerate(best) if d.needs_fallback(o)]
        for temperature in o.temperatures[1:]:
            if not todo:
                break
            retry = self.decode(layout.subset(todo), temperature)
            for i, d in zip(todo, retry):
                if best[i].needs_fallback(o) and (not d.needs_fallback(o)
                                                  or d.avg_logprob > best[i].avg_logprob):
                    best[i] = d
            todo = [i for i, d in zip(todo, retry) if d.needs_fallback(o)]
        return best
