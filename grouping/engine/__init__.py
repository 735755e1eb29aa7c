"""The EM engine: the unrolled EM loop (the paper's equations) and its assembly from a config."""
