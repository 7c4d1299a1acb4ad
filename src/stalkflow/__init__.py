"""stalkflow: LlamaIndex-Workflows-compatible workflows, embedded or distributed on Celery.

The same workflow code runs in one process with no infrastructure (the
default) or on Celery workers with its Context in Redis
(``stalkflow.configure(broker_url=..., redis_url=...)``).
"""

from stalkflow.context import Context
from stalkflow.decorators import catch_error, step
from stalkflow.distributed import configure
from stalkflow.engine import Engine, get_engine, set_engine
from stalkflow.errors import StalkflowError
from stalkflow.submit import RunHandle, get_run
from stalkflow.workflow import Workflow

__all__ = [
    "Context",
    "Engine",
    "RunHandle",
    "StalkflowError",
    "Workflow",
    "catch_error",
    "configure",
    "get_engine",
    "get_run",
    "set_engine",
    "step",
]
