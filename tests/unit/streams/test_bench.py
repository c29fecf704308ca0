"""The bench table: every rate against the same run's naive baseline and the lower ceiling; the machine's
facts; the peak-RSS mark the validator row resets and reads."""

from __future__ import annotations

import os
import time

from streams.bench import (
    CpuSplit,
    Latency,
    Row,
    Run,
    cpu_ticks_by_process,
    machine_line,
    median_run,
    peak_rss_kib,
    percentile,
    render,
    render_run,
    reset_peak_rss_kib,
)

ROWS = [
    Row("ceiling: consume-only", 100_000, 1.0, kind="ceiling"),
    Row("ceiling: bulk-insert-only", 100_000, 2.0, kind="ceiling"),  # the lower: 50,000/s
    Row("validator", 100_000, 4.0),  # 25,000/s
    Row("rehydrate", 150_000, 1.0),
    Row("naive baseline", 1_000, 1.0, kind="baseline"),
]
ALLOCATED_BYTES = 64 * 1024 * 1024
ALLOCATED_KIB = ALLOCATED_BYTES // 1024


def _line(text: str, name: str) -> list[str]:
    return next(line for line in text.splitlines() if line.startswith(name)).split()


def test_every_rate_is_a_ratio_to_the_baseline_and_to_the_lower_ceiling() -> None:
    text = render(ROWS, ["latency line"], fsync="on")
    assert _line(text, "validator")[-2:] == ["25.00", "0.50"]
    assert _line(text, "rehydrate")[-2:] == ["150.00", "3.00"]
    assert _line(text, "naive baseline")[-2:] == ["1.00", "0.02"]
    assert _line(text, "ceiling: bulk-insert-only")[-2:] == ["50.00", "1.00"]


def test_the_table_names_the_lower_ceiling_and_keeps_the_text_lines() -> None:
    text = render(ROWS, ["latency line"], fsync="on")
    assert "× ceiling: to the lower of the two, 'ceiling: bulk-insert-only'" in text
    assert "latency line" in text.splitlines()
    assert text.splitlines()[-1].startswith("postgres fsync=on")


def test_a_machine_under_half_a_core_of_load_per_core_is_quiet() -> None:
    line = machine_line(2, 2, (0.4, 0.3, 0.2))
    assert "2 cores (2 usable by this process)" in line
    assert "0.40 / 0.30 / 0.20" in line
    assert "0.20 per core over the last minute, quiet (below 0.5)" in line


def test_a_loaded_machine_is_busy() -> None:
    assert "0.75 per core over the last minute, busy (at or above 0.5)" in machine_line(2, 1, (1.5, 1.0, 0.5))


def test_the_peak_rss_mark_forgets_an_older_peak_and_rises_with_an_allocation() -> None:
    held = b"x" * ALLOCATED_BYTES  # touched, so resident
    del held
    start_kib = reset_peak_rss_kib()
    assert peak_rss_kib() < start_kib + ALLOCATED_KIB // 2
    held = b"x" * ALLOCATED_BYTES
    assert peak_rss_kib() >= start_kib + ALLOCATED_KIB * 9 // 10
    assert len(held) == ALLOCATED_BYTES


def _run(validator_s: float, p99_ms: float, load: str) -> Run:
    rows = [r if r.name != "validator" else Row("validator", r.count, validator_s) for r in ROWS]
    return Run(rows, Latency(10_000, 60.0, 600_000, p99_ms / 4, p99_ms, p99_ms * 2), [load])


def test_the_median_of_three_runs_is_each_rows_middle_rate_with_its_range() -> None:
    runs = [_run(4.0, 40.0, "first"), _run(2.0, 80.0, "second"), _run(5.0, 20.0, "third")]
    result = median_run(runs)
    validator = next(r for r in result.rows if r.name == "validator")
    assert validator.rate_per_s == 25_000  # of 20,000, 25,000 and 50,000
    assert validator.note.startswith("median of 3: 20,000–50,000/s")
    assert (result.latency.p50_ms, result.latency.p99_ms, result.latency.p999_ms) == (10.0, 40.0, 80.0)
    assert result.machine == ["first", "second", "third"]
    text = render_run(result, fsync="on")
    assert _line(text, "validator")[3:6] == ["25,000", "25.00", "0.50"]
    assert "p50 10.0 ms, p99 40.0 ms, p99.9 80.0 ms" in text


def test_a_percentile_is_the_nearest_rank_of_the_sorted_samples() -> None:
    samples = list(range(1, 1001))  # 1..1000 ms
    assert percentile(samples, 0.5) == 501
    assert percentile(samples, 0.99) == 991
    assert percentile(samples, 0.999) == 1000
    assert percentile([7], 0.999) == 7


def test_the_cpu_split_groups_processes_and_counts_one_started_meanwhile_whole() -> None:
    hz = os.sysconf("SC_CLK_TCK")
    me, writer = os.getpid(), 999_999
    before = {me: ("python", 0), 2: ("postgres", hz), 3: ("java", 0)}
    after = {me: ("python", 2 * hz), writer: ("python", hz), 2: ("postgres", 2 * hz), 3: ("java", hz // 2)}
    split = CpuSplit.between(before, after, writer, count=100_000, elapsed_s=2.0)
    assert split.seconds == {"validator": 2.0, "writer": 1.0, "postgres": 1.0, "kafka": 0.5, "other": 0.0}
    line = split.line(cores=2)
    assert "validator 20.0, writer 10.0, postgres 10.0, kafka 5.0, other 0.0; 45.0 in all" in line
    assert "2.25 of 2 cores busy at 50,000/s" in line and "leaves 40 µs" in line


def test_this_process_shows_in_procs_cpu_times() -> None:
    first = cpu_ticks_by_process()[os.getpid()][1]
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_ticks_by_process()[os.getpid()][1] > first
