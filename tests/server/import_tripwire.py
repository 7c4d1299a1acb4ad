"""Never imported by the server: a test names this module in an event and checks
that it stays out of ``sys.modules``."""

from __future__ import annotations

from stalkflow.events import HumanResponseEvent, StartEvent


class Tripwire(StartEvent):
    pass


class TripwireResponse(HumanResponseEvent):
    pass
