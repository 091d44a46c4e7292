"""The leader role (numpy only, never torch): the lease, the deduplicating merge, placement
and the coordinator cycle. Never imports the worker role."""
