"""The one-command demo: ``run`` (Redis, simulator, workers, workload), ``view`` (live table and report)."""
