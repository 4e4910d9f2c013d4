"""Leader election on a Lease: one leader at a time, takeover only after the lease expired, and of two
candidates racing on the same resourceVersion only one wins."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from fx_controller.backends.kubernetes.config import KubeConfig
from fx_controller.backends.kubernetes.leader import LEADER_LABEL, LeaderElection, label_pod
from kubernetes.client import V1OwnerReference
from kubernetes.client.exceptions import ApiException


class FakeLeases:
    """coordination.k8s.io Leases with the API server's optimistic concurrency."""

    def __init__(self) -> None:
        self.lease = None
        self.version = 0

    def read_namespaced_lease(self, name, namespace, **_):
        if self.lease is None:
            raise ApiException(status=404)
        return copy.deepcopy(self.lease)

    def create_namespaced_lease(self, namespace, body, **_):
        if self.lease is not None:
            raise ApiException(status=409)
        self.version += 1
        body.metadata.resource_version = str(self.version)
        self.lease = copy.deepcopy(body)

    def replace_namespaced_lease(self, name, namespace, body, **_):
        if body.metadata.resource_version != self.lease.metadata.resource_version:
            raise ApiException(status=409)
        self.version += 1
        body.metadata.resource_version = str(self.version)
        self.lease = copy.deepcopy(body)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def candidate(name: str, leases: FakeLeases, clock: Clock) -> LeaderElection:
    return LeaderElection(KubeConfig(pod_name=name, lease_duration=15), api=leases, clock=clock)


def test_one_leader_until_its_lease_expires() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = candidate("a", leases, clock), candidate("b", leases, clock)
    assert a.try_acquire() is True
    assert b.try_acquire() is False
    clock.now += timedelta(seconds=10)
    assert a.try_acquire() is True  # a renewal
    clock.now += timedelta(seconds=14)
    assert b.try_acquire() is False  # renewed 14 s ago: still a's
    clock.now += timedelta(seconds=2)
    assert b.try_acquire() is True  # a went quiet for longer than the lease: b takes over
    assert leases.lease.spec.holder_identity == "b" and leases.lease.spec.lease_transitions == 1
    assert a.try_acquire() is False


def test_two_candidates_racing_for_an_expired_lease_cannot_both_win() -> None:
    leases, clock = FakeLeases(), Clock()
    candidate("old", leases, clock).try_acquire()
    clock.now += timedelta(seconds=60)
    a, b = candidate("a", leases, clock), candidate("b", leases, clock)
    stale = leases.read_namespaced_lease("fx-controller", "default")
    assert a.try_acquire() is True
    # b read the lease before a's write: its replace carries the old resourceVersion.
    leases.read_namespaced_lease = lambda name, namespace, **_: copy.deepcopy(stale)
    assert b.try_acquire() is False
    assert leases.lease.spec.holder_identity == "a"


def test_a_released_lease_is_taken_at_once() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = candidate("a", leases, clock), candidate("b", leases, clock)
    assert a.try_acquire() is True
    a.release()  # a stopping controller
    assert b.try_acquire() is True
    assert leases.lease.spec.holder_identity == "b"


def test_the_holder_taken_over_from_is_known_and_the_lease_is_owned_by_the_deployment() -> None:
    leases, clock = FakeLeases(), Clock()
    owner = [V1OwnerReference(api_version="apps/v1", kind="Deployment", name="fx-controller", uid="u-1")]
    a, b = candidate("a", leases, clock), candidate("b", leases, clock)
    a.owners = b.owners = owner
    assert a.try_acquire() is True and a.previous is None
    assert leases.lease.metadata.owner_references == owner  # helm uninstall deletes it with the Deployment
    clock.now += timedelta(seconds=16)
    assert b.try_acquire() is True and b.previous == "a"  # whose pod loses the leader label
    assert a.try_acquire() is False


def test_a_lease_made_without_an_owner_gets_one_when_taken() -> None:
    leases, clock = FakeLeases(), Clock()
    candidate("old", leases, clock).try_acquire()
    leases.lease.spec.holder_identity = None  # released
    new = candidate("new", leases, clock)
    new.owners = [V1OwnerReference(api_version="apps/v1", kind="Deployment", name="fx-controller", uid="u-2")]
    assert new.try_acquire() is True
    assert leases.lease.metadata.owner_references[0].uid == "u-2"


def test_the_leader_label_goes_on_and_off_and_a_gone_pod_is_no_error() -> None:
    patches: list[tuple[str, dict]] = []

    class Core:
        def patch_namespaced_pod(self, name, namespace, body):
            if name == "gone":
                raise ApiException(status=404)
            patches.append((name, body))

    cfg = KubeConfig()
    label_pod(Core(), cfg, "b", True)
    label_pod(Core(), cfg, "a", False)
    label_pod(Core(), cfg, "gone", False)
    assert patches == [
        ("b", {"metadata": {"labels": {LEADER_LABEL: "true"}}}),
        ("a", {"metadata": {"labels": {LEADER_LABEL: None}}}),
    ]
