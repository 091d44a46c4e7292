"""Read-only views of a run: its status, results (best, history), report, cost and the
leader's Prometheus metrics. They read the bucket through bucket/ and never write it."""
