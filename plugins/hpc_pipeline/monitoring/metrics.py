"""Prometheus metrics of the pipeline, read from the results DB at each scrape.

Gauges, not counters: every value is a fact of the DB (a re-processed day changes its
numbers), computed fresh per scrape by one collector on a private registry, so nothing is
cached between scrapes and the api-server's workers all answer alike.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

DAY_STATUSES = ("complete", "partial", "incomplete")


def _day_end(day: dt.date) -> dt.datetime:
    """A day's data is whole at the next midnight (UTC): ages count from there."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc)


class PipelineCollector(Collector):
    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ) -> None:
        self._snapshot = snapshot
        self._now = now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "audio_pipeline_results_db_up", "1 when the results DB answered this scrape"
        )
        try:
            snap = self._snapshot()
        except Exception:  # the scrape must still say the DB is down
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        days = GaugeMetricFamily(
            "audio_pipeline_days", "Recorded days by status", labels=["status"]
        )
        for status in DAY_STATUSES:
            days.add_metric([status], snap["days_by_status"].get(status, 0))
        yield days

        age = GaugeMetricFamily(
            "audio_pipeline_last_complete_day_age_seconds",
            "Seconds since the end (next midnight UTC) of the latest complete day; +Inf if none",
        )
        last_complete = snap["last_complete_day"]
        age.add_metric(
            [],
            (self._now() - _day_end(last_complete)).total_seconds() if last_complete else math.inf,
        )
        yield age

        last = snap["last_day"]
        if last is None:
            return
        stamp = GaugeMetricFamily(
            "audio_pipeline_last_day_timestamp_seconds",
            "Start (UTC midnight) of the latest recorded day",
        )
        stamp.add_metric([], _day_end(last["day"]).timestamp() - 86400)
        yield stamp
        clips = GaugeMetricFamily(
            "audio_pipeline_last_day_clips",
            "Clips of the latest recorded day by outcome",
            labels=["status"],
        )
        for status in ("ok", "failed", "missing"):
            clips.add_metric([status], last[f"clips_{status}"])
        yield clips
        reasons = GaugeMetricFamily(
            "audio_pipeline_last_day_failed_clips",
            "Failed clips of the latest recorded day by reason",
            labels=["reason"],
        )
        for reason, n in sorted(last["failed_by_reason"].items()):
            reasons.add_metric([reason], n)
        yield reasons
        for name, column, text in (
            (
                "audio_pipeline_last_day_audio_seconds",
                "audio_seconds",
                "Audio transcribed on the latest recorded day",
            ),
            (
                "audio_pipeline_last_day_gpu_seconds",
                "gpu_seconds",
                "GPU seconds the audio step of the latest recorded day used",
            ),
        ):
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], last[column])
            yield gauge


def render(snapshot: Callable[[], dict[str, Any]]) -> bytes:
    """The text exposition format of one fresh scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(snapshot))
    return generate_latest(registry)
