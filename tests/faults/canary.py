"""A module no worker may ever import: a message naming one of its classes is refused.

Importing it marks the probe Redis, so a test can prove it never happened.
"""

from __future__ import annotations

import os

import redis

from stalkflow.events import Event

_url = os.environ.get("STALKFLOW_FAULTS_PROBE_URL")
if _url:
    client = redis.Redis.from_url(_url)
    client.set(f"{os.environ.get('STALKFLOW_PREFIX', 'stalkflow')}:canary:imported", os.getpid())
    client.close()


class Boom(Event):
    command: str = ""
