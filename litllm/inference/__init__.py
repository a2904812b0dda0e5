"""Generation: sampling, the batching engine, and constrained decoding."""
