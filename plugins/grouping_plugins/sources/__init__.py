"""Data sources of the built-in data sets: digit readers, sprites, motion, pixel kinds.

Nothing here is a plugin or registers anything; the plugins beside this package (``shapes``,
``flying_shapes``, ``flying_mnist``, ``hdf5``, ``arrays``) draw their pixels from these modules,
and so may a third-party data set.
"""
