"""Tests that need no engine and start no server: pure logic, and Django tests with no backend
or the in-memory one (``tests/unit/conftest.py`` refuses an engine fixture or marker here)."""
