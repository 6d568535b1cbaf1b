"""Shadow traffic: mirror, replay, normalise, diff, store (not built yet).

May import ``proxy`` (model, events, phases); never ``migrate``.
"""
