"""Pure logic with no I/O: deliveries, run records, routing, state paths.

Everything here is a plain function or a frozen value, callable from a unit test
without an event loop, a store or a broker. Adapters carry out what it decides.
"""
