"""What the users' API and the host API share of DRF: the one line a validation error is
answered with. Neither API imports the other's modules (docs/architecture.md)."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions

__all__ = ["flatten_detail"]


def flatten_detail(detail: Any, prefix: str = "") -> str:
    """DRF's nested validation errors as one readable line (``field: message; ...``)."""
    if isinstance(detail, dict):
        parts = []
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors" and not prefix:
                name = ""
            parts.append(flatten_detail(value, name))
        return "; ".join(part for part in parts if part)
    if isinstance(detail, list):
        if all(isinstance(item, (str, exceptions.ErrorDetail)) for item in detail):
            text = " ".join(str(item) for item in detail)
            return f"{prefix}: {text}" if prefix else text
        parts = []
        for index, item in enumerate(detail):
            if item:
                parts.append(flatten_detail(item, f"{prefix}[{index}]"))
        return "; ".join(parts)
    text = str(detail)
    return f"{prefix}: {text}" if prefix else text
