"""Test helpers shared by several test areas (real Ignition, sshd, ...)."""
