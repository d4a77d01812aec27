"""A results DB holding the corpus' days, recorded through the real load path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from corpus import DAYS, day_load, recorded_db

from hpc_pipeline.hooks.results_db import ResultsDbHook
from support import use_results_db


@pytest.fixture(scope="module")
def corpus_db(postgres: str) -> Iterator[dict[str, str]]:
    """``{"db", "dsn"}`` of a fresh results DB with every corpus day recorded."""
    with recorded_db("search", (day_load(day) for day in DAYS)) as name:
        yield {"db": name, "dsn": f"{postgres}/{name}"}


@pytest.fixture
def hook(corpus_db: dict[str, str]) -> ResultsDbHook:
    use_results_db(corpus_db["db"])
    return ResultsDbHook("audio_results_db")
