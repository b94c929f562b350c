"""The ``volrob`` command line."""
