"""A results DB holding the corpus' days, recorded through the real load path."""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from typing import Iterator

import pytest

from corpus import DAYS, day_load
from hpc_pipeline.hooks.results_db import ResultsDbHook


def psql(sql: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-qc", sql], check=True)


def use_results_db(name: str) -> None:
    os.environ["AIRFLOW_CONN_AUDIO_RESULTS_DB"] = json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "audio",
        "password": "audio", "schema": name})


@pytest.fixture(scope="module")
def corpus_db(postgres: str) -> Iterator[dict[str, str]]:
    """``{"db", "dsn"}`` of a fresh results DB with every corpus day recorded."""
    name = f"search_{uuid.uuid4().hex[:10]}"
    psql(f"CREATE DATABASE {name} OWNER audio")
    use_results_db(name)
    try:
        hook = ResultsDbHook("audio_results_db")
        hook.migrate()
        for day in DAYS:
            hook.record_day(day_load(day))
        yield {"db": name, "dsn": f"{postgres}/{name}"}
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def hook(corpus_db: dict[str, str]) -> ResultsDbHook:
    use_results_db(corpus_db["db"])
    return ResultsDbHook("audio_results_db")
