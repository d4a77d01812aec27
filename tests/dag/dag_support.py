"""Plain helpers for the whole-DAG tests (fixtures live in conftest.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DAY = "2024-01-15"
SOURCE_ROOT = Path(f"/srv/audio-source-test{os.environ.get('AUDIO_TEST_NS', '')}")


def write_config(path: Path, tag: str, **overrides: Any) -> Path:
    """A site config (config/local.json + overrides) isolating cluster dirs under ``tag``."""
    config = json.loads((REPO / "config" / "local.json").read_text())
    config.update(source_root=str(SOURCE_ROOT), remote_root=f"audio-pipeline-test/{tag}",
                  staging_root=f"audio-pipeline-test/{tag}/staging", retries=0)
    config.update(overrides)
    path.write_text(json.dumps(config))
    return path
