"""Building blocks of the built-in networks: layers, not plugins."""
