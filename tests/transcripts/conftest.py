"""A results DB holding the corpus' days, recorded through the real load path."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from corpus import DAYS, day_load

from hpc_pipeline.hooks.results_db import ResultsDbHook
from support import create_db, drop_db, use_results_db


@pytest.fixture(scope="module")
def corpus_db(postgres: str) -> Iterator[dict[str, str]]:
    """``{"db", "dsn"}`` of a fresh results DB with every corpus day recorded."""
    name = f"search_{uuid.uuid4().hex[:10]}"
    create_db(name)
    use_results_db(name)
    try:
        hook = ResultsDbHook("audio_results_db")
        hook.migrate()
        for day in DAYS:
            hook.record_day(day_load(day))
        yield {"db": name, "dsn": f"{postgres}/{name}"}
    finally:
        drop_db(name)


@pytest.fixture
def hook(corpus_db: dict[str, str]) -> ResultsDbHook:
    use_results_db(corpus_db["db"])
    return ResultsDbHook("audio_results_db")
