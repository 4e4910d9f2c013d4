"""`fx logs` on Kubernetes: the backend copies each replica pod's log into the function's log file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fx_controller.backends.base import ReplicaEvent, ReplicaSpec
from fx_controller.backends.kubernetes.backend import KubernetesBackend
from fx_controller.backends.kubernetes.pod_logs import PodLogs
from fx_controller.backends.kubernetes.pods import PodState

from .kube_fakes import DIGEST, POOL_CFG, FakeApi, pod, settle, spec


class FakeLogSource:
    """The pods' log streams, fed by the test as the API server would, in chunks that cut lines anywhere."""

    def __init__(self) -> None:
        self.streams: dict[str, tuple[Callable[[bytes], None], Callable[[], None]]] = {}

    def follow_log(self, pod: str, on_chunk: Callable[[bytes], None], on_end: Callable[[], None]) -> None:
        self.streams[pod] = (on_chunk, on_end)

    def send(self, pod: str, data: bytes) -> None:
        self.streams[pod][0](data)

    def end(self, pod: str) -> None:
        self.streams.pop(pod)[1]()


def test_lines_of_two_pods_of_a_function_never_cut_into_each_other(tmp_path: Path) -> None:
    source = FakeLogSource()
    logs = PodLogs(source, tmp_path)
    logs.follow("p1", "hello")
    logs.follow("p1", "hello")  # once per pod
    logs.follow("p2", "hello")
    source.send("p1", b"START RequestId: a\nhello fr")
    source.send("p2", b"START RequestId: b\n")
    source.send("p1", b"om a\nEND")
    source.end("p1")  # the unfinished line is kept
    source.send("p2", b"END RequestId: b\n")
    assert (tmp_path / "hello.log").read_bytes().splitlines() == [
        b"START RequestId: a",
        b"START RequestId: b",
        b"hello from a",
        b"END",
        b"END RequestId: b",
    ]


async def test_the_backend_copies_the_log_of_each_replica_pod_and_notes_init_errors(tmp_path: Path) -> None:
    api, source = FakeApi(), FakeLogSource()
    events: list[ReplicaEvent] = []
    backend = KubernetesBackend(api, logs=PodLogs(source, tmp_path))
    await backend.open(events.append)
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec()))
    api.on_pod("MODIFIED", pod("p1", ip="10.244.0.7", ready=True))
    assert list(source.streams) == ["p1"]

    await backend.start_replica(ReplicaSpec("r2", "hello", 1, DIGEST, spec()))
    error = ("Runtime.ImportModuleError", "Unable to import module 'handler'", 1)
    api.on_pod("MODIFIED", pod("p2", init_error=error))
    assert list(source.streams) == ["p1"]
    assert (tmp_path / "hello.log").read_text() == (
        "[ERROR] Runtime.ImportModuleError: Unable to import module 'handler' (pod p2, exit code 1)\n"
    )
    await backend.close()


async def test_a_pool_pod_is_followed_from_the_moment_it_becomes_the_functions(tmp_path: Path) -> None:
    api, source = FakeApi(cfg=POOL_CFG), FakeLogSource()
    events: list[ReplicaEvent] = []

    async def specialize(ip: str, env: dict, files: dict) -> dict:
        assert "pool-a" in source.streams, "its init output (an import error, say) is the function's too"
        return {"event": "ready"}

    backend = KubernetesBackend(api, specialize=specialize, logs=PodLogs(source, tmp_path))
    await backend.open(events.append)
    api.on_pod("ADDED", PodState("pool-a", "", 0, ip="10.244.0.20", ready=True, pool=True))
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec()))
    await settle()
    assert events == [ReplicaEvent("r1", "ready", endpoint="10.244.0.20:8080")]
    await backend.close()


def test_a_log_folder_made_on_demand_and_a_failing_one_breaks_nothing(tmp_path: Path) -> None:
    logs = PodLogs(FakeLogSource(), tmp_path / "logs")
    logs.note("hello", "[ERROR] Runtime.ImportModuleError: nope")
    assert (tmp_path / "logs" / "hello.log").read_text() == "[ERROR] Runtime.ImportModuleError: nope\n"
    (tmp_path / "file").write_text("")
    broken = PodLogs(FakeLogSource(), tmp_path / "file" / "logs")  # cannot be a folder
    broken.note("hello", "lost, and said so in the controller's log")
    broken.follow("p1", "hello")
