"""The engine settings of the site config reach the audio job's arguments."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from dag_support import write_config
from support import import_dag


def _audio_args(config: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("AUDIO_PIPELINE_CONFIG", str(config))
    module = import_dag(f"daily_{uuid.uuid4().hex}")
    return [str(a) for a in module.dag.get_task("audio").script_args]


def _value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_torch_engine_with_beam_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(
        tmp_path / "c.json",
        "wiring",
        engine="torch",
        beam_size=5,
        batch_size=64,
        model_name="whisper-large-v3-hf",
    )
    args = _audio_args(config, monkeypatch)
    assert (
        _value(args, "--engine"),
        _value(args, "--beam-size"),
        _value(args, "--batch-size"),
        _value(args, "--model"),
    ) == ("torch", "5", "64", "whisper-large-v3-hf")


def test_engine_default_beam_when_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = _audio_args(write_config(tmp_path / "c.json", "wiring", engine="whisperx"), monkeypatch)
    assert "--beam-size" not in args and _value(args, "--engine") == "whisperx"
