"""The results database, one module per job over one connection helper
(``connection.ResultsConnection``): ``schema`` (versioned migrations), ``day_load`` (the
idempotent per-day load), ``reads`` (the monitoring app's pooled reads), ``guards`` (alert
de-duplication and one run per day). ``hooks.results_db.ResultsDbHook`` combines them for
the DAG's steps; every SQL statement of the pipeline lives in this package.
"""
