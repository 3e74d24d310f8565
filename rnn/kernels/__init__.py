"""The Numba backend: a small compiler from a cell's traced step to fused forward and BPTT kernels."""
