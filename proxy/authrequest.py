"""auth_request (ngx_http_auth_request_module): access decided by a subrequest.

The interpreter stops its walk at the first auth_request whose answer it does not have
(``interp._NeedAuth``); :func:`run` then:

1. routes the subrequest (``Interpreter.subrequest``): a GET of the auth URI in the same
   server, internal, sharing the client's headers, no access phase, no limits;
2. serves it through the engine's own content handlers into :class:`SubrequestExchange`, which
   keeps the status and headers and drops the body (nginx's ``header_only`` subrequest); it is
   not access-logged (``log_subrequest off``);
3. evaluates ``auth_request_set`` in the subrequest's context (``$upstream_http_*``,
   ``$upstream_status``... of the subrequest) and copies a 401's ``WWW-Authenticate``;
4. routes the request again with that answer known: 2xx allows, 401 and 403 deny with that
   status, anything else is 500, combined with allow/deny and auth_basic by ``satisfy``.
   The second walk repeats the first (its limits are carried over, realip starts again from
   the connection's address), so no phase runs twice with an effect.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .interp import AuthOutcome, RouteRequest, RouteResult

if TYPE_CHECKING:
    from .engine import Engine, Exchange, _Run

__all__ = ["MAX_SUBREQUESTS", "SubrequestExchange", "run"]

MAX_SUBREQUESTS = 10
"""auth_request subrequests one request may make (each internal redirect may meet one)."""


class SubrequestExchange:
    """The engine's view of a subrequest: the client's connection and headers, method GET,
    no body; the answer's status and headers are kept, its body dropped."""

    def __init__(self, client: Exchange) -> None:
        self.client = client
        self.head = dataclasses.replace(client.head, method=b"GET", end_stream=True,
                                        chunked=False)
        self.scheme = client.scheme
        self.local_addr, self.local_port = client.local_addr, client.local_port
        self.remote_addr, self.remote_port = client.remote_addr, client.remote_port
        self.connection_id = client.connection_id
        self.connection_requests = client.connection_requests
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.aborted = False

    async def body(self) -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - an empty async generator

    def body_complete(self) -> bool:
        return True

    def send_continue(self) -> None:
        return None

    def send_headers(self, status: int, headers: list[tuple[bytes, bytes]], *,
                     end_stream: bool = False, reason: bytes | None = None,
                     close: bool = False) -> None:
        self.status = status
        self.headers = list(headers)

    def send_data(self, data: bytes) -> None:
        return None

    async def drain(self) -> None:
        return None

    def end(self) -> None:
        return None

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *,
                      reason: bytes | None = None, close: bool = False) -> None:
        self.send_headers(status, headers)

    def abort(self) -> None:
        self.aborted = True

    def tunnel(self, upstream: object) -> None:
        return None

    def tls_var(self, name: str) -> str | None:
        return self.client.tls_var(name)


async def run(engine: Engine, client: Exchange, result: RouteResult, main_run: _Run
              ) -> RouteResult:
    """Make the subrequest ``result.auth`` asks for; the request routed again with its
    answer known."""
    from .engine import _Run

    need = result.auth
    assert need is not None
    parent = need.ctx
    req = parent.req
    if len(req.auth_outcomes) >= MAX_SUBREQUESTS:
        result.kind, result.status, result.auth = "error", 500, None
        return result
    sub_run = _Run(start=time.time())

    def hook(name: str) -> str | None:
        if name[:4] == "ssl_":
            return client.tls_var(name)
        return engine._var(name, sub_run)

    sub_req = dataclasses.replace(
        req, method="GET", target=need.uri, var_hook=hook, auth_outcomes=[], subrequest=True,
        prior=None)
    sub_result = engine.interp.subrequest(sub_req, parent)
    capture = SubrequestExchange(client)
    await engine._respond(capture, sub_result, sub_run)  # type: ignore[arg-type]
    status = capture.status or sub_run.status or 500
    sub_state = sub_result.state
    variables: dict[str, str] = {}
    for entry in need.sets:
        value = sub_state.eval(entry.value) if sub_state is not None else ""  # type: ignore[attr-defined]
        variables[entry.name] = value  # type: ignore[attr-defined]
    # nginx copies the upstream's own header (a subrequest has no access phase, so nothing
    # else sets one; an add_header'ed WWW-Authenticate is not copied)
    www = next((v.decode("latin-1") for k, v in sub_run.upstream_headers or ()
                if k.lower() == b"www-authenticate"), None)
    outcome = AuthOutcome(status=status, www_authenticate=www, variables=variables)
    again: RouteRequest = dataclasses.replace(
        req, auth_outcomes=[*req.auth_outcomes, outcome], prior=parent,
        remote_addr=client.remote_addr, remote_port=client.remote_port)
    return engine.interp.route(again)
