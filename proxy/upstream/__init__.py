"""Upstream groups at run time: which peer gets the next request; how peers fall ill and recover.

``balancer`` is sans-I/O: a :class:`~proxy.upstream.balancer.PeerGroup` is built once at config
load (host names in ``server`` lines are resolved there, as nginx does), and every request walks it
through a :class:`~proxy.upstream.balancer.Attempt` (``next(now)``, then ``success(now)`` or
``failure(now)``; time is always an argument). Round robin, ``least_conn``, ``ip_hash``, ``hash``
and ``hash ... consistent`` follow nginx 1.22's modules decision for decision; the connection and
the retry loop belong to the engine.
"""
