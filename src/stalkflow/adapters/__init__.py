"""Adapters of the two ports: in-process (memory, local) and distributed (Redis, Celery).

Only modules in this package import celery, kombu or redis; they translate those
libraries' exceptions into stalkflow's own at the boundary.
"""
