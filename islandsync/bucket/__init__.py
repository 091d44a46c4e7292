"""Layer 2, the bucket protocol (torch-free): every key (:mod:`.layout`), every JSON record
and the one hardened boundary that reads them (:mod:`.records`), checkpoints and elite
epochs (:mod:`.checkpoints`, :mod:`.codec`), the run spec's blob (:mod:`.run`), liveness from
heartbeat versions (:mod:`.liveness`) and numpy genome ids (:mod:`.ids`). Both roles build on
it; it imports neither."""
