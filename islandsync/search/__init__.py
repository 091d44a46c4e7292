"""Layer 3, the maths (torch, no I/O): problems, population tensors, algorithms with a
registry. Imports nothing of the bucket but the numpy genome-id constants."""
