"""Compatibility guest for componentize-py: a wasi:http 0.2 proxy.

GET / says hello, POST /echo streams the request body back, anything else is 404.
Plain blocking stream calls: no event loop is needed for a pipe.
"""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

# `blocking-write-and-flush` takes at most 4096 bytes a call.
WRITE_MAX = 4096


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method = request.method()
        path = request.path_with_query()
        if isinstance(method, Method_Get) and path == "/":
            respond(response_out, 200, lambda out: out.blocking_write_and_flush(b"hello from python\n"))
        elif isinstance(method, Method_Post) and path == "/echo":
            with request.consume() as incoming:
                with incoming.stream() as source:
                    respond(response_out, 200, lambda out: pipe(source, out))
        else:
            respond(response_out, 404, lambda out: None)


def respond(response_out: ResponseOutparam, status: int, write_body) -> None:
    """Sends the response head, lets `write_body` fill the body, then finishes it."""
    response = OutgoingResponse(Fields())
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as out:
        write_body(out)
    OutgoingBody.finish(body, None)


def pipe(source, out) -> None:
    """Copies `source` to `out` chunk by chunk until the request body ends."""
    while True:
        try:
            chunk = source.blocking_read(65536)
        except Err as e:
            if isinstance(e.value, StreamError_Closed):
                return
            raise
        for i in range(0, len(chunk), WRITE_MAX):
            out.blocking_write_and_flush(chunk[i : i + WRITE_MAX])
