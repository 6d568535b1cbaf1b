"""The proxy: model, routing, engine, protocol adapters, I/O.

Bottom layer: imports neither ``shadow`` nor ``migrate``.
"""
