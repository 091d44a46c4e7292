"""Fault injection: kill -9, SIGSTOP, bucket outages, corrupt blobs, bad fitness, skewed clocks,
each run on real processes and followed by the invariants of
:mod:`islandsync.testing.invariants`."""
