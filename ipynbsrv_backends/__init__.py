"""Run users' containers on one Docker host or a fleet of them, from inside Django."""

__version__ = "0.1.0"
