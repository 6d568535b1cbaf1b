"""Sans-I/O protocol adapters: bytes in, events out; events in, bytes out. No sockets, no asyncio.

HTTP/1.x (httptools), HTTP/2 (h2) and HTTP/3 (aioquic) share the event vocabulary of ``events``.
"""
