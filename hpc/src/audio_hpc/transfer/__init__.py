"""Staging a day's clips: ``day`` (the job's entry point) over the ``local`` and ``globus``
backends."""
