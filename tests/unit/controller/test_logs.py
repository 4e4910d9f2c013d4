"""Reading a function's log file: stamps taken off or shown, a cut window from an invocation's start, since,
and following whole lines only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from fx_controller.backends import local_logs as logs


def invocation(stamp: str, rid: str, *lines: str) -> str:
    body = "".join(f"{line}\n" for line in lines)
    end = f"END RequestId: {rid}\nREPORT RequestId: {rid}\tDuration: 1 ms\n"
    return f"{stamp} START RequestId: {rid} Version: 1\n{body}{end}"


LOG = (
    "2026-01-01T10:00:00.000Z INIT_START Runtime Version: python:3.11\n"
    "fx-runtime ready on unix:/x (init 1.00 ms)\n"
    + invocation("2026-01-01T10:00:01.000Z", "a", "a1", "a2")
    + invocation("2026-01-01T10:05:00.000Z", "b", "b1")
)


def test_the_whole_log_reads_as_the_function_wrote_it(tmp_path):
    path = tmp_path / "fn.log"
    path.write_text(LOG)
    text, position, cut = logs.tail(path, 100, logs.Reader())
    assert text.decode().splitlines()[0] == "INIT_START Runtime Version: python:3.11"
    assert b"Z START" not in text and not cut and position.offset == len(LOG)


def test_a_cut_window_begins_at_an_invocation(tmp_path):
    path = tmp_path / "fn.log"
    path.write_text(LOG)
    b = ["START RequestId: b Version: 1", "b1", "END RequestId: b", "REPORT RequestId: b\tDuration: 1 ms"]
    for lines in (4, 5, 8):  # b is 4 lines, a 5: a's last lines never lead
        text, _, cut = logs.tail(path, lines, logs.Reader())
        assert cut and text.decode().splitlines() == b
    text, _, _ = logs.tail(path, 9, logs.Reader())
    assert text.decode().startswith("START RequestId: a ")
    text, _, _ = logs.tail(path, 2, logs.Reader())  # one invocation longer than the window: its last lines
    assert text.decode().splitlines() == ["END RequestId: b", "REPORT RequestId: b\tDuration: 1 ms"]


def test_since_and_timestamps_go_by_the_invocation_s_stamp(tmp_path):
    path = tmp_path / "fn.log"
    path.write_text(LOG)
    since = logs.stamp_of(datetime(2026, 1, 1, 11, 1, tzinfo=timezone(timedelta(hours=1))))
    assert since == b"2026-01-01T10:01:00.000Z"
    text, _, _ = logs.tail(path, 100, logs.Reader(since=since, timestamps=True))
    assert text.decode().splitlines() == [
        "2026-01-01T10:05:00.000Z START RequestId: b Version: 1",
        "2026-01-01T10:05:00.000Z b1",
        "2026-01-01T10:05:00.000Z END RequestId: b",
        "2026-01-01T10:05:00.000Z REPORT RequestId: b\tDuration: 1 ms",
    ]
    assert logs.stamp_of(datetime(2026, 1, 1, 10, 1, tzinfo=UTC)) == since
    # Past datetime's range in UTC (before: OverflowError, a 500): from the first stamp, or after the last.
    assert logs.stamp_of(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == b"0001-01-01T00:00:00.000Z"
    late = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-2)))
    assert logs.stamp_of(late) == b"9999-12-31T23:59:59.999Z"
    assert logs.stamp_of(datetime(999, 1, 1)) == b"0999-01-01T00:00:00.000Z"  # sorts before 2026 as bytes


async def test_follow_yields_whole_lines_and_starts_over_on_a_new_file(tmp_path):
    path = tmp_path / "fn.log"
    path.write_text("")
    reads = 0

    async def disconnected() -> bool:
        nonlocal reads
        reads += 1
        writes = {1: "2026-01-01T10:00:00.000Z START Request", 2: "Id: a Version: 1\nhalf", 3: " done\n"}
        if reads in writes:
            with path.open("a") as f:
                f.write(writes[reads])
        elif reads == 4:
            path.unlink()  # fx rm, then a new function of the name writes less than was there
            path.write_text("new\n")
        return reads > 5

    chunks = [c async for c in logs.follow(path, logs.Position(), logs.Reader(timestamps=True), disconnected, poll=0)]
    assert chunks == [
        b"2026-01-01T10:00:00.000Z START RequestId: a Version: 1\n",
        b"2026-01-01T10:00:00.000Z half done\n",
        b"2026-01-01T10:00:00.000Z new\n",
    ]
