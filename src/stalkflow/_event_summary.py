"""``summarize_event`` under llama-index-workflows' module path (``workflows._event_summary``).

The implementation, and its description, is :mod:`stalkflow.events.summary`.
"""

from __future__ import annotations

from stalkflow.events.summary import summarize_event

__all__ = ["summarize_event"]
