"""Making it fast where it runs: device choice, matmul precision, CPU linear kernels."""
