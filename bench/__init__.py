"""The benchmark harness (``make bench``, ``python -m bench``): what the abstraction costs
next to the engine's own speed, every figure a ratio against raw docker-py measured in the
same run. Not part of the package and never run by ``make test`` (one small test runs it
with tiny sizes so it does not rot)."""
