"""Shared fixtures: the VM test bed's fixtures live in the package so every test area uses one set."""

pytest_plugins = ["flatcar_infra.testbed.pytest_plugin"]
