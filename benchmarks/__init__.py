"""Side-by-side performance measurements of stalkflow (not part of the test suite).

``python -m benchmarks [--quick] [--only NAME]``; see ``benchmarks/README.md``.
"""
