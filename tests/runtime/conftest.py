"""Fixtures of the runtime tests: the tiny export folder they share lives in tests/conftest.py
(the benchmark tests run it too)."""
