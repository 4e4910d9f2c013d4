"""Knative's decision as traces: panic mode on a step, no scale-down while panicking, bounded rates, the scale-down
delay and the requests-per-second target. Each pass is the reconcile loop's (every 0.5 s); the replicas asked
for are ready by the next pass unless the trace says otherwise."""

from fx.models import ScaleSpec
from fx_controller.replicas.autoscaler import Autoscaler, Tuning

KEY = "f/1"
STEP = 0.5


class Trace:
    def __init__(self, scale: ScaleSpec, tuning: Tuning) -> None:
        self.scale, self.scaler = scale, Autoscaler(tuning)
        self.now, self.ready, self.requests = 0.0, 0, 0

    def run(self, seconds: float, in_flight: int, rps: float = 0.0) -> list[tuple[float, int, bool]]:
        """Passes over `seconds` at a steady load: (time, desired, panicking) after each."""
        seen = []
        for _ in range(round(seconds / STEP)):
            self.now += STEP
            self.requests += round(rps * STEP)
            self.ready = self.scaler.desired(
                KEY, self.scale, in_flight, 0.0, self.now, True, ready=self.ready, requests=self.requests
            )
            seen.append((self.now, self.ready, self.scaler.last(KEY)[1]))
        return seen


KNATIVE = Tuning(stable_window=60.0)  # Knative's defaults: panic window 6 s, threshold 200 %, rates 1000 and 2


def test_a_step_enters_panic_and_reaches_the_load_within_the_panic_window():
    t = Trace(ScaleSpec(max=50, concurrency=1), KNATIVE)
    assert {(d, p) for _, d, p in t.run(60, in_flight=1)} == {(1, False)}
    step = t.run(6, in_flight=10)
    # The 6 s panic window's average reaches 2 x the ready replicas' target 2 s after the step: 4 in flight for 2.
    assert next(at for at, _, panicking in step if panicking) == 62.0, step
    assert step[-1][1] == 10, step  # the panic window's average has caught up within its 6 s
    # The stable average alone would still ask for 2: (108 x 1 + 12 x 10) / 120 in flight.
    calm = Trace(ScaleSpec(max=50, concurrency=1, panic_threshold_percentage=1000), KNATIVE)
    calm.run(60, in_flight=1)
    assert calm.run(6, in_flight=10)[-1][1:] == (2, False)


def test_a_drop_does_not_scale_down_until_the_stable_window_is_calm():
    t = Trace(ScaleSpec(max=50, concurrency=1), KNATIVE)
    t.run(60, in_flight=1)
    t.run(10, in_flight=10)
    after = t.run(65, in_flight=1)
    panicking = [(at, d) for at, d, p in after if p]
    assert {d for _, d in panicking} == {10}, "no scale-down while panicking"
    # Panic began at 62 and was last over the threshold then: it ends once 60 s have passed since.
    assert panicking[-1][0] == 122.0
    first_calm = next(d for at, d, p in after if not p)
    assert first_calm == 5, "the stable average takes over, halving at most (max-scale-down-rate 2)"
    assert after[-1][1:] == (1, False)


def test_scale_up_and_down_rates_are_bounded_by_the_ready_replicas():
    t = Trace(ScaleSpec(max=50, concurrency=1), Tuning(stable_window=10.0, max_scale_up_rate=2.0))
    t.run(0.5, in_flight=1)
    assert [d for _, d, _ in t.run(2.5, in_flight=30)] == [2, 4, 8, 16, 30]
    t = Trace(ScaleSpec(max=50, concurrency=1), Tuning(stable_window=1.0, max_scale_down_rate=4.0))
    t.run(1, in_flight=32)
    assert [d for _, d, _ in t.run(3, in_flight=1)] == [32, 8, 2, 1, 1, 1]  # a quarter of the ready at most


def test_replicas_not_yet_ready_hold_back_the_scale_up_rate():
    scale, scaler = ScaleSpec(max=50, concurrency=1), Autoscaler(Tuning(max_scale_up_rate=3.0))
    assert scaler.desired(KEY, scale, 40, 0.0, 1.0, True, ready=0) == 3  # from zero, one replica counts as ready
    assert scaler.desired(KEY, scale, 40, 0.0, 1.5, True, ready=2) == 6


def test_the_scale_down_delay_holds_the_highest_decision():
    t = Trace(ScaleSpec(max=10, concurrency=1), Tuning(stable_window=1.0, scale_down_delay=5.0))
    t.run(2, in_flight=4)
    held = t.run(12, in_flight=1)
    assert [d for at, d, _ in held if at <= 7.0] == [4] * 10  # the last 4 was decided at 2.0
    # Each lower decision is held 5 s too; the rate bound made the first of them 2 (half the 4 ready).
    assert [(at, d) for at, d, _ in held if at in (7.5, 8.0, 12.5, 13.0)] == [(7.5, 3), (8.0, 2), (12.5, 2), (13.0, 1)]


def test_the_rps_target_wins_when_it_asks_for_more():
    # 40 requests/s at 2 in flight: concurrency 10 per replica asks for 1, 5 requests/s per replica for 8.
    t = Trace(ScaleSpec(max=20, concurrency=10, target_rps=5), Tuning(stable_window=4.0))
    assert t.run(8, in_flight=2, rps=40)[-1][1] == 8
    # Without a target, or with a target the load is under, concurrency decides.
    assert Trace(ScaleSpec(max=20, concurrency=10), Tuning(stable_window=4.0)).run(8, 2, rps=40)[-1][1] == 1
    assert Trace(ScaleSpec(max=20, concurrency=1, target_rps=100), Tuning(stable_window=4.0)).run(8, 6, 40)[-1][1] == 6


def test_a_function_s_scale_spec_overrides_the_controller_s_defaults():
    t = Trace(ScaleSpec(max=50, concurrency=1, stable_window=2, panic_threshold_percentage=1000), KNATIVE)
    t.run(2, in_flight=1)
    assert not any(p for _, _, p in t.run(2, in_flight=8)), "8 x is under a 1000 % threshold"
    assert t.run(2, in_flight=8)[-1][1] == 8  # the 2 s stable window has caught up
