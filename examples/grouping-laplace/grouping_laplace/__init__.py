"""grouping-laplace: an example third-party plugin package for grouping.

It provides two plugins, each a module registered through the ``grouping`` entry-point group:

* ``laplace`` (:mod:`grouping_laplace.laplace`): Laplace pixels for real-valued (e.g. colour) images;
* ``colour-sprites`` (:mod:`grouping_laplace.colour_sprites`): RGB images of coloured sprites with
  per-pixel ground truth.
"""

__version__ = "0.1.0"
