"""``python -m grouping``: the same command line as the ``grouping`` script."""

from grouping.cli.main import main

main()
