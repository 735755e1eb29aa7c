"""The run folder: its files, atomic checkpoints, the lock, warm starts, loading a trained model
and listing runs. (Named ``rundir`` so that ``grouping.runs``, the listing function, stays one.)"""
