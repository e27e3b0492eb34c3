"""Which differences are real: per-query metrics of stored runs, bootstrap intervals, paired tests, per-query
inspection and protocol sensitivity (``docs/STATISTICS.md``)."""
