"""Deliberately wrong (and correct) hand-written model ports, for verify_port's tests."""
