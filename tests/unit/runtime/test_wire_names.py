"""The runtime restates its side of the replica protocol to stay free of fx-core: the same names as fx.protocol,
and the header lengths Connection.on_header compares before it lowers a name."""

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
    assert f"len(name) == {len(server.TOKEN_HEADER)} and name.lower() == TOKEN_HEADER" in source
    assert f"len(name) == {len(server.ERROR_DETAIL_HEADER)} and name.lower() == ERROR_DETAIL_HEADER" in source
    assert f"len(name) == {len(server.RESPONSE_STREAM_HEADER)} and name.lower() == RESPONSE_STREAM_HEADER" in source
