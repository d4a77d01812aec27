"""Batched decoding of 30 s windows (greedy, sampling; beam search in ``torch_beam``), with
Whisper's fallback and guards.

Rows of one batch decode in lock step against static K/V buffers; each row reads its own span
of an encoded window (``torch_pack``). On CUDA every step replays a captured CUDA graph for a
bucket of live rows, and finished rows are dropped from the live set (an index rewrite) so
long rows do not drag short ones' cost along. The guards are Whisper's:
a row whose text compresses too well (repetition loop) or whose mean log-probability is too
low is decoded again at the next temperature; a row whose no-speech probability is high and
whose log-probability is low is silence.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import astuple, replace

import numpy as np
import torch
import torch.nn.functional as F

from audio_hpc.engines.torch_beam import beam_search
from audio_hpc.engines.torch_checkpoint import Vocab
from audio_hpc.engines.torch_model import DecodeState, WhisperTorch
from audio_hpc.engines.torch_pack import WINDOW_SAMPLES, Layout
from audio_hpc.engines.torch_rows import (
    Decoded,
    DecodeOptions,
    Encoded,
    Prompted,
    compression_ratio,
)


def _buckets(limit: int, first: int) -> list[int]:
    out, b = [], first
    while b < limit:
        out.append(b)
        b *= 2
    return out + [limit]


class BatchDecoder:
    """Encodes windows and decodes batches of up to ``max_batch`` rows (chunks) on one device."""

    def __init__(
        self,
        model: WhisperTorch,
        vocab: Vocab,
        max_batch: int,
        language: str,
        options: DecodeOptions = DecodeOptions(),
        cuda_graphs: bool = True,
    ) -> None:
        """``max_batch`` rows, decoded against at most as many windows."""
        self.model, self.vocab, self.options = model, vocab, options
        self.device = next(model.parameters()).device
        self.detect_language = vocab.multilingual and not language
        self.prompt = vocab.prompt(language)
        max_len = min(len(self.prompt) + options.max_new_tokens, model.dims.max_target_positions)
        self.max_new = max_len - len(self.prompt)
        self.state = DecodeState(model, max_batch, max_len, options.cross_fp8)
        if not 1 <= options.beam_size <= max_batch:
            raise ValueError(
                f"beam_size {options.beam_size} must be between 1 and the batch ({max_batch})"
            )
        self.max_chunks = max_batch // options.beam_size  # chunks per batch: a row per beam
        self.row_buckets = sorted(
            {*_buckets(min(max_batch, 64), 8), *range(64, max_batch, 32), max_batch}
        )
        v = model.dims.vocab_size
        bias = torch.zeros(v, device=self.device)
        bias[vocab.eot + 1 :] = -torch.inf  # special and timestamp tokens
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
        if options.compile_encoder:  # one graph for all layers; shapes fixed (encode pads)
            for layer in model.model.encoder.layers:
                layer.compile(dynamic=False)
        if cuda_graphs and cuda:
            self._capture_all()
        if cuda:
            torch.cuda.synchronize(self.device)  # buffers are used from other streams next

    def _capture_all(self) -> None:
        """Capture one graph per row bucket up front, sharing one memory pool."""
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for n in self.row_buckets:
                self.state.step(n)  # warm-up: lazy init outside capture
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool, stream=stream):
                    out = self.state.step(n)
                self.graphs[n] = (graph, out)
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()

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
                part = windows[i : i + step]
                rows = step if self.options.compile_encoder else len(part)
                audio = torch.zeros(
                    (rows, WINDOW_SAMPLES),
                    dtype=torch.float32,
                    pin_memory=self.device.type == "cuda",
                )
                for j, w in enumerate(part):
                    audio[j, : len(w)] = torch.from_numpy(w[:WINDOW_SAMPLES])
                mel = self.model.log_mel(audio.to(self.device, non_blocking=True)).to(dtype)
                outputs.append(self.model.model.encoder(mel)[: len(part)])
            ready = self.encoder_stream.record_event() if self.encoder_stream else None
        return Encoded(outputs, ready)

    def _load_cross(self, encoded: Encoded) -> None:
        """Cross-attention K/V of every layer from the encoder outputs, into windows ``[:w]``."""
        if encoded.ready is not None:
            torch.cuda.current_stream().wait_event(encoded.ready)
        first = 0
        for out in encoded.outputs:
            if encoded.ready is not None:  # made on the side stream, read on this one
                out.record_stream(torch.cuda.current_stream())
            self.state.set_cross(first, out)
            first += len(out)

    def logits(self, n: int) -> torch.Tensor:
        """One decoder step for live rows ``[:n]`` (a graph replay on CUDA); float32 logits
        valid until the next step."""
        if not self.graphs:
            return self.state.step(n)
        graph, out = self.graphs[next(b for b in self.row_buckets if b >= n)]
        graph.replay()
        return out[:n]

    def prompt_phase(self, layout: Layout, encoded: Encoded | None, per_chunk: int) -> Prompted:
        """The start every search shares: each chunk of ``layout`` on ``per_chunk`` rows (a
        beam's rows are one hypothesis until it speaks), the prompt fed through, and what
        Whisper decides before any text: the no-speech probability at the start-of-transcript
        position and the language (when detected), both from each chunk's first row. Greedy
        and beam search begin here, so a chunk's no-speech probability and language are the
        same whichever search follows."""
        n, lp, st = len(layout.spans), len(self.prompt), self.state
        self._load_cross(encoded or self.encode(layout.windows))
        rows = n * per_chunk
        st.start([astuple(sp) for sp in layout.spans for _ in range(per_chunk)], self.prompt[0])
        language = torch.full(
            (n,), self.prompt[1] if self.vocab.multilingual else -1, device=self.device
        )
        no_speech = torch.zeros(n, device=self.device)
        for step in range(lp):
            logits = self.logits(rows)
            if step == 0:
                no_speech = logits[::per_chunk].softmax(-1)[:, self.vocab.no_speech]
            if step == lp - 1:
                break
            nxt = torch.full((rows,), self.prompt[step + 1], device=self.device)
            if step == 0 and self.detect_language:
                language = self.lang_ids[logits[::per_chunk, self.lang_ids].argmax(-1)]
                nxt = language.repeat_interleave(per_chunk)
            st.tokens[:rows], st.positions[:rows] = nxt, step + 1
        return Prompted(no_speech, language, logits)

    def fixed_lengths(self, fixed_tokens: list[int]) -> torch.Tensor:
        """Benchmark decode lengths, capped to the room a row has."""
        return torch.tensor([min(f, self.max_new - 1) for f in fixed_tokens], device=self.device)

    @torch.inference_mode()
    def decode(
        self,
        layout: Layout,
        temperature: float = 0.0,
        fixed_tokens: list[int] | None = None,
        encoded: Encoded | None = None,
    ) -> list[Decoded]:
        """Decode the rows of ``layout`` (<= max_batch) at one temperature: greedy at 0,
        sampling above.

        ``encoded``: ``encode(layout.windows)``, if already queued. ``fixed_tokens`` forces each
        row to exactly that many text tokens (end-of-text suppressed before, forced after):
        for benchmarks with random weights only.
        """
        n = len(layout.spans)
        prompted = self.prompt_phase(layout, encoded, 1)
        dev, lp, st, eot = self.device, len(self.prompt), self.state, self.vocab.eot
        max_tok = torch.full((n,), self.max_new - 1, device=dev)
        min_tok = torch.zeros(n, dtype=torch.long, device=dev)
        if fixed_tokens is not None:
            max_tok = self.fixed_lengths(fixed_tokens)
            min_tok = max_tok.clone()
        out_tokens = torch.full((n, self.max_new), eot, device=dev)
        sum_lp = torch.zeros(n, device=dev)
        n_text = torch.zeros(n, dtype=torch.long, device=dev)
        row = torch.arange(n, device=dev)  # live row -> row of the layout
        done = torch.zeros(n, dtype=torch.bool, device=dev)
        live, logits = n, prompted.logits
        for g in range(self.max_new):
            if g:
                logits = self.logits(live)
            logits = logits + (self.begin_bias if g == 0 else self.bias)
            logits[:, eot] = torch.where(g < min_tok[row], -torch.inf, logits[:, eot])
            logprobs = F.log_softmax(logits, dim=-1)
            if temperature > 0:
                nxt = torch.multinomial((logits / temperature).softmax(-1), 1)[:, 0]
            else:
                nxt = logits.argmax(-1)
            nxt = torch.where(g >= max_tok[row], eot, nxt)
            alive = ~done
            sum_lp[row] += torch.where(alive, logprobs.gather(1, nxt[:, None])[:, 0], 0.0)
            is_text = alive & (nxt != eot)
            out_tokens[row, g] = torch.where(is_text, nxt, eot)
            n_text[row] += is_text.long()
            done = done | (nxt == eot)
            st.tokens[:live], st.positions[:live] = nxt, lp + g
            if g % 4 == 0:
                keep = torch.nonzero(~done)[:, 0]
                left = keep.numel()
                if left == 0:
                    break
                if left < live:
                    st.keep(keep)
                    row, done, live = row[keep], done[keep], left
        return [
            self.decoded(toks[:k], s, ns, lang, temperature)
            for toks, s, k, ns, lang in zip(
                out_tokens.tolist(),
                sum_lp.tolist(),
                n_text.tolist(),
                prompted.no_speech.tolist(),
                prompted.language.tolist(),
            )
        ]

    def decoded(
        self, tokens: list[int], sum_lp: float, no_speech: float, language: int, temperature: float
    ) -> Decoded:
        """A row's outcome; ``sum_lp`` includes the end-of-text token (Whisper's average)."""
        text = self.vocab.decode(tokens).strip()
        return Decoded(
            text=text,
            tokens=tokens,
            avg_logprob=sum_lp / (len(tokens) + 1),
            no_speech_prob=no_speech,
            compression_ratio=compression_ratio(text),
            language=self.lang_names.get(language, "en"),
            temperature=temperature,
        )

    def decode_beam(
        self, layout: Layout, encoded: Encoded | None = None, fixed_tokens: list[int] | None = None
    ) -> list[Decoded]:
        """Beam search (``torch_beam``) of ``options.beam_size`` for the rows of ``layout``."""
        return beam_search(self, layout, encoded, fixed_tokens)

    def transcribe(
        self, layout: Layout, fixed_tokens: list[int] | None = None, encoded: Encoded | None = None
    ) -> list[Decoded]:
        """Greedy (or beam search) first; rows failing the guards go again, together, at each
        next temperature (sampling).
        When every temperature fails, the attempt with the best log-probability is kept."""
        with torch.cuda.stream(self.decode_stream) if self.decode_stream else nullcontext():
            return self._transcribe(layout, fixed_tokens, encoded)

    def _transcribe(
        self, layout: Layout, fixed_tokens: list[int] | None, encoded: Encoded | None
    ) -> list[Decoded]:
        o = self.options
        if o.beam_size > 1:
            encoded = encoded or self.encode(layout.windows)
            beamed = self.decode_beam(layout, encoded, fixed_tokens)
            # The beam can collapse onto one early branch (every row a variant of a likely
            # first word that skips a sentence) and lose the greedy path; keep greedy's text
            # when it is the likelier per token (tiny.en, 24 clips: WER 8.64 % -> 8.11 %).
            greedy = self.decode(layout, 0.0, fixed_tokens, encoded)
            best = [
                replace(g if g.avg_logprob > b.avg_logprob else b, greedy_logprob=g.avg_logprob)
                for b, g in zip(beamed, greedy)
            ]
        else:
            best = self.decode(layout, o.temperatures[0], fixed_tokens, encoded)
        todo = [i for i, d in enumerate(best) if d.needs_fallback(o)]
        for temperature in o.temperatures[1:]:
            if not todo:
                break
            retry = self.decode(layout.subset(todo), temperature)
            for i, d in zip(todo, retry):
                if best[i].needs_fallback(o) and (
                    not d.needs_fallback(o) or d.avg_logprob > best[i].avg_logprob
                ):
                    best[i] = d
            todo = [i for i, d in zip(todo, retry) if d.needs_fallback(o)]
        return best
