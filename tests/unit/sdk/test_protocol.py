import json

from fx.protocol import (
    ActivationReply,
    ActivationRequest,
    LoadReport,
    RouteTable,
    VersionLoad,
    VersionRoute,
    artifact_key,
)


def test_route_table_survives_the_wire():
    table = RouteTable(
        function="hello",
        revision=7,
        traffic={"1": 90, "2": 10},
        versions={"1": VersionRoute(["127.0.0.1:4000"], 1), "2": VersionRoute([], 0)},
        aliases={"live": "1"},
    )
    back = RouteTable.from_json(table.to_json())
    assert back == table
    assert isinstance(back.versions["2"], VersionRoute)


def test_a_version_with_no_standby_is_written_as_a_gateway_of_the_release_before_reads_it():
    """A gateway reads a version's route with exactly the fields it knows: during a rolling upgrade, one of the
    release before must still read the new controller's tables (on Kubernetes a version never has a standby)."""
    table = RouteTable("hello", 1, {"1": 100}, {"1": VersionRoute(["10.0.0.1:8080"], 1, "t")})
    assert json.loads(table.to_json())["versions"]["1"] == {
        "endpoints": ["10.0.0.1:8080"],
        "concurrency": 1,
        "token": "t",
    }
    table.versions["1"].standby = "unix:/run/fx/hello/s-1.sock"
    assert RouteTable.from_json(table.to_json()) == table


def test_activation_and_load_messages_survive_the_wire():
    req = ActivationRequest("hello", "3", queued=5)
    assert ActivationRequest.from_json(req.to_json()) == req
    reply = ActivationReply(ok=False, status=502, error="Runtime.ImportModuleError", cause="No module named 'x'")
    assert ActivationReply.from_json(reply.to_json()) == reply
    load = LoadReport("gw-1", {"hello/3": VersionLoad(in_flight=2, queued=1, requests=40)})
    assert LoadReport.from_json(load.to_json()) == load


def test_artifact_key_is_a_valid_object_name():
    assert artifact_key("sha256:" + "ab" * 32) == "sha256-" + "ab" * 32
