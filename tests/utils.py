"""Kept for older imports: the helpers live in :mod:`tests.support`."""

from .support import api_as, free_port, http_answers, http_get, load_image_into, wait_for

__all__ = ["api_as", "free_port", "http_answers", "http_get", "load_image_into", "wait_for"]
