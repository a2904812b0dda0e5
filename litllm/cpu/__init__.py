"""CPU speed-ups: the C kernels (built on first use), the choice among linear kernels, packed weights, memory."""
