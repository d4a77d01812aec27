"""Plain helpers for the whole-DAG tests (fixtures live in conftest.py)."""

from __future__ import annotations

import functools
from pathlib import Path

import support
from support import TEST_NS

DAY = "2024-01-15"
ALERT_TO = "data-team@example.org"  # where the tests' stacks mail their alerts
SOURCE_ROOT = Path(f"/srv/audio-source-test{TEST_NS}")
# A site config whose source days are these tests' (``source_root=`` still overrides it).
write_config = functools.partial(support.write_config, source_root=SOURCE_ROOT)
