"""ResultsDbHook: the results database for the DAG's steps and the monitoring app, one hook
over the jobs of ``hpc_pipeline.results`` (schema, day load, reads, guards)."""

from __future__ import annotations

from hpc_pipeline.results.day_load import DayLoad, DayLoader, JobRecord
from hpc_pipeline.results.guards import DayGuards
from hpc_pipeline.results.reads import MonitoringReads
from hpc_pipeline.results.schema import ResultsSchema

__all__ = ["DayLoad", "JobRecord", "ResultsDbHook"]


class ResultsDbHook(ResultsSchema, DayLoader, MonitoringReads, DayGuards):
    """PostgreSQL results DB: migrations, the day load, monitoring reads, alerts and claims
    (see each base class); ``keep_readers`` as ``ResultsConnection``."""
