"""The runtime restates its side of the replica protocol to stay free of fx-core: the same names as fx.protocol,
and Connection.on_header acts on each header the gateway gives a meaning."""

import inspect

from fx import protocol
from fx_runtime import server


def test_the_runtimes_wire_names_are_fx_protocols():
    assert protocol.REPLICA_TOKEN.lower().encode() == server.TOKEN_HEADER
    assert protocol.ERROR_DETAIL.lower().encode() == server.ERROR_DETAIL_HEADER
    assert protocol.RESPONSE_STREAM.lower().encode() == server.RESPONSE_STREAM_HEADER
    assert protocol.REPLICA_HTTP_PREFIX.encode() == server._HTTP_PREFIX
    assert protocol.REPLICA_HEALTH_PATH.encode() == server._HEALTH
    source = inspect.getsource(server)
    assert f'url == b"{protocol.REPLICA_INVOKE_PATH}"' in source
    gateway_headers = (
        protocol.REPLICA_TOKEN,
        protocol.ERROR_DETAIL,
        protocol.RESPONSE_STREAM,
        protocol.INVOKED_QUALIFIER,
        protocol.RUNS_AS_LATEST,
        protocol.REQUEST_ID,
        protocol.ROUTE_CONTEXT,
        protocol.BODY_REF,
    )
    assert {name.lower().encode() for name in gateway_headers} <= server._PLATFORM_HEADERS.keys()
