"""The live grid's supervisor side, without supervisord: the conf, the names, the figures' parsing."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

from gridgov import live
from gridgov.live import LivePaths, Plan, Program, ServiceStatus


def plan(**changes: object) -> Plan:
    fields: dict[str, object] = {
        "scenario": "default",
        "market": "book",
        "seed": 3,
        "tick_s": 0.5,
        "agents": {"solar-1": "/k/solar-1.g0.key", "odd.one": "/k/odd.one.g1.key"},
        "dashboard_port": 8599,
    }
    return Plan(**{**fields, **changes})  # type: ignore[arg-type]


def parsed(text: str) -> configparser.RawConfigParser:
    conf = configparser.RawConfigParser()
    conf.read_string(text)
    return conf


def test_every_service_is_a_program_that_restarts_with_its_own_log(tmp_path: Path) -> None:
    paths = LivePaths(tmp_path)
    found = live.programs(plan(), paths, Path("/k/meter.g0.key"), {"GRID_KEY_SECRET": "ab" * 32})
    conf = parsed(live.render_conf(paths, found))
    names = [s.removeprefix("program:") for s in conf.sections() if s.startswith("program:")]
    assert names == ["validator", "meter", "agent-odd_one", "agent-solar-1", "sinks", "dashboard"]
    for name in names:
        section = conf[f"program:{name}"]
        assert (section["autorestart"], section["startsecs"], section["startretries"]) == ("true", "3", "5")
        assert section["stdout_logfile"] == str(paths.logs / f"{name}.log")
        assert section["stopasgroup"] == section["killasgroup"] == "true"
    # the root secret reaches the validator alone; every agent is given its own key file and no other
    assert conf["program:validator"]["environment"] == f'GRID_KEY_SECRET="{"ab" * 32}"'
    assert all("environment" not in conf[f"program:{n}"] for n in names if n != "validator")
    assert "--key /k/solar-1.g0.key" in conf["program:agent-solar-1"]["command"]
    meter = conf["program:meter"]["command"]
    assert f"--registry {paths.registry}" in meter and "--tick-s 0.5" in meter
    assert conf["unix_http_server"]["file"] == str(paths.socket)
    assert conf["unix_http_server"]["chmod"] == "0700"


def test_without_sinks_or_dashboard_they_are_not_programs(tmp_path: Path) -> None:
    found = live.programs(plan(sinks=False, dashboard_port=None), LivePaths(tmp_path), Path("/k/m"), {})
    assert [p.name for p in found] == ["validator", "meter", "agent-odd_one", "agent-solar-1"]


def test_a_percent_sign_survives_supervisors_interpolation(tmp_path: Path) -> None:
    paths = LivePaths(tmp_path / "100%")
    text = live.render_conf(paths, [Program("x", ("echo", "50%"), 1)])
    assert "command=echo 50%%" in text and f"logfile={tmp_path}/100%%/live/supervisord.log" in text


def test_a_deep_home_gets_a_short_socket_of_its_own(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    assert len(str(LivePaths(deep).socket)) <= live.SOCKET_PATH_MAX
    assert LivePaths(deep).socket != LivePaths(tmp_path / ("e" * 120)).socket
    assert LivePaths(Path("/g")).socket == Path("/g/live/supervisor.sock")


def test_the_plan_survives_a_round_trip(tmp_path: Path) -> None:
    kept = plan()
    kept.save(tmp_path / "plan.json")
    assert Plan.load(tmp_path / "plan.json") == kept
    assert Plan.load(tmp_path / "none.json") is None


def test_restarts_are_counted_from_supervisors_log() -> None:
    log = (
        "2026-12-03 12:00:00,001 INFO spawned: 'validator' with pid 10\n"
        "2026-12-03 12:00:00,002 INFO spawned: 'agent-solar-1' with pid 11\n"
        "2026-12-03 12:00:09,000 INFO exited: 'agent-solar-1' (exit status 1; not expected)\n"
        "2026-12-03 12:00:10,000 INFO spawned: 'agent-solar-1' with pid 12\n"
    )
    assert live.spawn_counts(log) == {"validator": 1, "agent-solar-1": 2}


def test_memory_adds_up_a_process_and_its_descendants() -> None:
    me = os.getpid()
    own = live.process_tree_rss_kb(me, {})
    assert own > 0
    # two children (one of them with a child) of ours, and an unrelated process that is not counted
    parents = {me: 1, 999_999_001: me, 999_999_002: me, 999_999_003: 999_999_001, os.getppid(): 1}
    assert live.process_tree_rss_kb(me, parents) == own  # the made-up pids hold no memory


def test_status_rows_say_up_or_down_and_leave_unknown_figures_out() -> None:
    rows = live.status_rows(
        [
            ServiceStatus("validator", "RUNNING", 10, 61, 1, 2048, 0, 500, "seq 499 meter (tick 40)"),
            ServiceStatus("agent-x", "FATAL"),
        ]
    )
    assert rows[0] == ["validator", "up", 10, "61s", 1, 0, 500, "2", "seq 499 meter (tick 40)"]
    assert rows[1][:2] == ["agent-x", "down (fatal)"] and rows[1][5:7] == ["-", "-"]
