"""Data on its way to the EM loop: batches and prefetch, data files, their values, data tools."""
