"""A Flatcar-like VM built from Debian packages: the test bed and the built-in local target."""
