"""The ``flatcar-infra`` command line."""
