"""The worker role (torch): the engine that steps islands, the checkpoint uploader, the bucket
thread and the loop. Never imports the leader role; a worker that also stands as a leader
candidate is composed at the edges (:func:`islandsync.api.make_worker`)."""
