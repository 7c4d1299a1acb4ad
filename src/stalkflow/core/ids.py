"""Identifiers of runs and deliveries."""

from __future__ import annotations

import hashlib
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_run_id(size: int = 10) -> str:
    """A random run id of ``size`` characters from ``[A-Za-z0-9]`` (upstream's format)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(size))


def new_delivery_id() -> str:
    """A random delivery id, for deliveries with no parent (start, external sends)."""
    return secrets.token_hex(8)


def child_delivery_id(parent_id: str, position: int, step: str) -> str:
    """The id of the delivery made from output ``position`` of delivery ``parent_id``.

    It is derived, not random, so that a parent delivery executed twice (a
    redelivered message) produces children with the same ids, and the store's
    dedupe by id routes each of them once.
    """
    digest = hashlib.blake2b(f"{parent_id}:{position}:{step}".encode(), digest_size=8)
    return digest.hexdigest()
