"""Fixtures of the fault tests: worker clusters shared where no test harms them.

Every test here injects a fault for real (signals to ``celery worker``
processes, ``redis-server`` processes killed and restarted, messages purged from
the broker) and asserts what survived. See ``_harness.py``.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Workers and this process must name Parked's queue alike; set before the import.
os.environ.setdefault(
    "STALKFLOW_FAULTS_PARKED_QUEUE", f"stalkflow-faults-parked-{uuid.uuid4().hex}"
)

from tests.faults._harness import FaultCluster, fault_cluster, fault_settings  # noqa: E402

from stalkflow.engine import set_engine  # noqa: E402


@pytest.fixture(scope="session")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    """Two worker processes, each a threads pool of 4, shared by the tests that harm none.

    A visibility timeout of 4 s: the broker hands a message still being executed
    to the other worker after 4 s (stalkflow's claims must drop that copy), and a
    retry delay longer than that must not be a broker countdown.
    """
    settings = fault_settings(visibility_timeout_s=4.0)
    workers = {
        "pair-a": ["--pool=threads", "--concurrency=4"],
        "pair-b": ["--pool=threads", "--concurrency=4"],
    }
    with fault_cluster(tmp_path_factory.mktemp("pair"), workers, settings) as cluster:
        yield cluster


@pytest.fixture
def use_pair(pair: FaultCluster) -> Iterator[FaultCluster]:
    """``pair``, its engine the default of this process for the test's duration."""
    set_engine(pair.cluster.engine)
    try:
        yield pair
    finally:
        set_engine(None)
