"""Scaling decisions from load reports and a clock: up at once, down after the stable window, zero when idle."""

from fx.models import ScaleSpec
from fx.protocol import LoadReport, VersionLoad
from fx_controller.replicas.autoscaler import Autoscaler, Tuning
from fx_controller.replicas.load import LoadBook

KEY = "f/1"


def report(gateway: str, in_flight: int = 0, queued: int = 0, requests: int = 0, errors: int = 0) -> LoadReport:
    return LoadReport(gateway, {KEY: VersionLoad(in_flight=in_flight, queued=queued, requests=requests, errors=errors)})


class Scenario:
    """Feeds reports to a LoadBook and asks the Autoscaler, as the reconcile loop does; the replicas it asks for
    are ready by its next question."""

    def __init__(self, scale: ScaleSpec, window: float = 10.0, serving: bool = True) -> None:
        self.scale, self.serving, self.ready = scale, serving, 0
        self.book, self.scaler = LoadBook(), Autoscaler(Tuning(stable_window=window))

    def at(self, now: float, *reports: LoadReport) -> int:
        for r in reports:
            self.book.observe(r, now)
        observed, idle_for = self.book.observed(KEY, now), self.book.idle_for(KEY, now)
        requests = self.book.totals[KEY].requests
        self.ready = self.scaler.desired(
            KEY, self.scale, observed, idle_for, now, self.serving, ready=self.ready, requests=requests
        )
        return self.ready


def test_load_from_all_gateways_is_summed_and_scales_up_at_once():
    s = Scenario(ScaleSpec(max=10, concurrency=2))
    assert s.at(0.0) == 0  # never used: nothing runs
    assert s.at(1.0, report("a", in_flight=3, queued=2), report("b", in_flight=4)) == 5  # ceil(9 / 2)


def test_desired_is_clamped_to_min_and_max():
    s = Scenario(ScaleSpec(min=2, max=4, concurrency=1))
    assert s.at(0.0) == 2
    assert s.at(1.0, report("a", in_flight=50)) == 4


def test_scale_down_waits_for_the_stable_window():
    s = Scenario(ScaleSpec(max=10, concurrency=1, idle_timeout=300), window=10.0)
    assert s.at(0.0, report("a", in_flight=8)) == 8
    assert s.at(5.0, report("a", in_flight=1)) == 8  # still within the window of the peak
    # Calm for a stable window: down, at most halving the ready replicas a step (max-scale-down-rate 2).
    assert [s.at(t, report("a", in_flight=1)) for t in (10.5, 11.0, 11.5)] == [4, 2, 1]


def test_an_idle_version_keeps_one_replica_until_idle_timeout_then_goes_to_zero():
    s = Scenario(ScaleSpec(concurrency=1, idle_timeout=2.0), window=0.5)
    assert s.at(0.0, report("a", requests=3)) == 1
    assert s.at(1.0, report("a")) == 1
    assert s.at(1.9, report("a")) == 1
    assert s.at(2.1, report("a")) == 0


def test_min_keeps_replicas_of_a_serving_version_but_not_of_an_old_one():
    assert Scenario(ScaleSpec(min=1, idle_timeout=1.0)).at(100.0) == 1
    assert Scenario(ScaleSpec(min=1, idle_timeout=1.0), serving=False).at(100.0) == 0


def test_concurrency_zero_means_one_replica_per_100_in_flight():
    s = Scenario(ScaleSpec(max=10, concurrency=0))
    assert s.at(0.0, report("a", in_flight=250)) == 3


def test_a_silent_gateway_is_forgotten_after_5_s():
    s = Scenario(ScaleSpec(max=10, concurrency=1, idle_timeout=300), window=0.1)
    assert s.at(0.0, report("a", in_flight=4), report("b", in_flight=2)) == 6
    assert s.at(4.0, report("a", in_flight=4)) == 6  # b's last word still counts
    assert s.at(6.0, report("a", in_flight=4)) == 4  # b is gone


def test_requests_and_errors_are_totalled_across_reports():
    book = LoadBook()
    book.observe(report("a", requests=5, errors=1), 0.0)
    book.observe(report("b", requests=2), 0.5)
    book.observe(report("a", requests=3, errors=2), 1.0)
    assert (book.totals[KEY].requests, book.totals[KEY].errors) == (10, 3)


def test_a_version_held_warm_keeps_its_replicas_without_load_then_goes_to_zero():
    scale, scaler = ScaleSpec(concurrency=1, idle_timeout=1.0), Autoscaler(Tuning(stable_window=0.5))
    assert scaler.desired(KEY, scale, 0, float("inf"), 0.0, serving=False, warm=3) == 3
    assert scaler.desired(KEY, scale, 5, float("inf"), 1.0, serving=False, warm=3) == 5  # load still scales it up
    assert scaler.desired(KEY, scale, 0, 10.0, 20.0, serving=False, warm=0) == 0  # the hold is over
