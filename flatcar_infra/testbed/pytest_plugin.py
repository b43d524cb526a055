"""pytest fixtures for booting test-bed VMs (loaded by tests/conftest.py)."""
