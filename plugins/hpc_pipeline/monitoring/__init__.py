"""Monitoring of the daily pipeline, served by Airflow's own api-server.

A FastAPI app (JSON API, status page with plots, Prometheus metrics) mounted at
``/audio-pipeline`` by the Airflow plugin in :mod:`hpc_pipeline.monitoring.plugin`. It reads the
results DB only through ``ResultsDbHook``; nothing in the DAG or the SLURM operators imports it.
"""
