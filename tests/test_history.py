"""The unit's event history and `edge-agent events export` from it, a run log and a rig run.

The history (drivers/history.py) is real files in a temporary directory; the
runtime test runs the real Runtime loop for a dozen steps with a fixed wall
clock; the export is the real command line, read back as text and Parquet.
"""

import csv
import json

import pytest

from drivers.history import EventHistory, read_history
from edge_agent import events as ev
from tools.cli import main

DAY = 86_400_000
T0 = 1_781_000_000_000            # 2026-06-09 10:13:20 UTC


def history(tmp_path, **kw):
    return EventHistory(str(tmp_path / "history"), fsync=False, **kw)


def test_events_are_kept_with_their_own_unix_time_in_day_files(tmp_path):
    h = history(tmp_path)
    # A step at mono 50,000 ms read the wall clock T0; its pulse was stamped 1 ms earlier.
    h.put([(49_999, ev.DETECTOR_ON, 4), (50_000, ev.DETECTOR_OFF, 4)], T0, 50_000)
    h.put([(50_100, ev.PHASE_BEGIN_GREEN, 4)], T0 + 100, 50_100)
    h.flush()
    assert h.read() == [(T0 - 1, ev.DETECTOR_ON, 4), (T0, ev.DETECTOR_OFF, 4),
                        (T0 + 100, ev.PHASE_BEGIN_GREEN, 4)]
    assert h.read(T0, T0 + 100) == [(T0, ev.DETECTOR_OFF, 4)]
    assert sorted(p.name for p in (tmp_path / "history").iterdir()) == ["2026-06-09.jsonl"]


def test_days_older_than_the_retention_are_deleted_whatever_was_acknowledged(tmp_path):
    h = history(tmp_path, days=2)
    for d in range(4):
        h.put([(0, ev.PHASE_BEGIN_GREEN, 2)], T0 + d * DAY, 0)
        h.flush()
    names = sorted(p.name for p in (tmp_path / "history").iterdir())
    assert names == ["2026-06-11.jsonl", "2026-06-12.jsonl"]
    assert [t for t, _, _ in h.read()] == [T0 + 2 * DAY, T0 + 3 * DAY]
    assert h.stats()["files_pruned"] == 2


def test_the_history_is_bounded_on_disk(tmp_path):
    line = len(json.dumps([T0, 82, 4], separators=(",", ":"))) + 1      # 20 bytes
    h = history(tmp_path, days=30, max_bytes=50 * line)
    for d in range(3):                       # 30 events a day: 3 days are 90 lines
        h.put([(k, ev.DETECTOR_ON, 4) for k in range(30)], T0 + d * DAY, 0)
        h.flush()
    # Each new day's first step deleted the day before to stay under 50 lines.
    names = sorted(p.name for p in (tmp_path / "history").iterdir())
    assert names == ["2026-06-11.jsonl"]
    # The current day alone: a step that does not fit is dropped and counted.
    h.put([(k, ev.DETECTOR_ON, 4) for k in range(30)], T0 + 2 * DAY + 1000, 0)
    h.flush()
    h.put([(0, ev.DETECTOR_ON, 4)], T0 + 2 * DAY + 2000, 0)
    h.flush()
    assert len(h.read()) == 31 and h.stats()["dropped_full"] == 30
    assert h.stats()["bytes"] == 31 * line


def test_a_torn_last_line_is_skipped(tmp_path):
    h = history(tmp_path)
    h.put([(0, ev.PHASE_BEGIN_GREEN, 2)], T0, 0)
    h.stop()
    with open(tmp_path / "history" / "2026-06-09.jsonl", "ab") as f:
        f.write(b"[1781000000100,1,")
    assert read_history(str(tmp_path / "history")) == [(T0, ev.PHASE_BEGIN_GREEN, 2)]


def write_site(tmp_path, zone="America/New_York"):
    from tests.linkrig import quick_site
    site = quick_site()
    site["time_zone"] = zone
    site["device_id"] = "1136"
    site["detectors"][1]["function"] = ["Presence", "Advance"]
    path = tmp_path / "site.json"
    path.write_text(json.dumps(site))
    return str(path)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_the_runtime_keeps_a_history_that_exports_in_local_time(tmp_path):
    from drivers.keys import load_provisioning
    from drivers.runtime import Runtime
    from tools.export import load_site
    from tests.linkrig import KID, SECRET as HEX
    with open(tmp_path / "provision.json", "w") as f:
        json.dump({"store_dir": str(tmp_path / "store"),
                   "keys": [{"kid": KID, "scheme": "hmac", "secret": HEX}]}, f)
    site_path = write_site(tmp_path)
    wall = [T0 / 1000]
    rt = Runtime(load_site(site_path), load_provisioning(str(tmp_path / "provision.json")),
                 wall_clock=lambda: wall[0])
    rt.run(max_steps=15)
    # Central acknowledged everything: the outbox may forget, the history keeps it.
    rt.outbox.acked(rt.outbox.next_seq - 1)
    rt.outbox.flush(sync=True)
    assert rt.outbox.backlog() == 0
    out = tmp_path / "export"
    assert main(["events", "export", "--config", site_path, "--history",
                 str(tmp_path / "store" / "history"), "--out", str(out)]) == 0
    rows = read_csv(out / "events.csv")
    assert rows[0] == ["TimeStamp", "DeviceId", "EventId", "Parameter"]
    # 06:13:20 EDT: every event of the run has the wall reading (the clock stood still).
    assert {r[0] for r in rows[1:]} == {"2026-06-09 06:13:20.000-04:00"}
    codes = [(int(r[2]), int(r[3])) for r in rows[1:]]
    assert codes[0] == (ev.BOOT_PLAN, 3)                       # site local plan
    assert (ev.PHASE_BEGIN_GREEN, 2) in codes and (ev.PHASE_BEGIN_GREEN, 6) in codes
    assert {r[1] for r in rows[1:]} == {"1136"}
    assert read_csv(out / "detectors.csv") == [
        ["DeviceId", "Phase", "Parameter", "Function"],
        ["1136", "2", "2", "Presence"], ["1136", "4", "4", "Presence"],
        ["1136", "4", "4", "Advance"], ["1136", "6", "6", "Presence"],
        ["1136", "8", "8", "Presence"]]


def test_export_from_a_run_log_keeps_a_window_and_writes_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow.parquet")
    site_path = write_site(tmp_path, zone="America/Chicago")
    log = tmp_path / "events.jsonl"
    lines = [{"intersection": "int-A", "seq": 1, "unix_ms": T0, "mono_ms": 5, "code": 1, "param": 2},
             {"intersection": "int-A", "gap": [2, 3]},
             [4, T0 + 60_000, 60_005, 8, 2],                 # an outbox journal line
             [5, T0 + 3_600_000, 3_600_005, 1, 4]]
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "export"
    assert main(["events", "export", "--config", site_path, "--log", str(log), "--format",
                 "parquet", "--since", "2026-06-09 05:00", "--until", "2026-06-09 06:00",
                 "--out", str(out)]) == 0
    t = pa.read_table(out / "events.parquet")
    assert str(t.schema.field("TimeStamp").type) == "timestamp[ms, tz=America/Chicago]"
    got = t.to_pydict()
    assert [x.isoformat() for x in got["TimeStamp"]] == ["2026-06-09T05:13:20-05:00",
                                                         "2026-06-09T05:14:20-05:00"]
    assert got["EventId"] == [1, 8] and got["Parameter"] == [2, 2]
    assert pa.read_table(out / "detectors.parquet").num_rows == 5


def test_export_refuses_a_site_with_an_unknown_zone(tmp_path, capsys):
    site_path = write_site(tmp_path, zone="America/Atlantis")
    log = tmp_path / "events.jsonl"
    log.write_text("")
    assert main(["events", "export", "--config", site_path, "--log", str(log),
                 "--out", str(tmp_path / "x")]) == 2
    assert "'America/Atlantis' is not a time zone" in capsys.readouterr().err


def test_export_of_a_rig_run_starts_at_the_given_local_time(tmp_path):
    out = tmp_path / "rig"
    assert main(["events", "export", "--rig", "night", "--duration", "120",
                 "--start", "2026-03-08 01:59", "--out", str(out)]) == 0
    rows = read_csv(out / "events.csv")[1:]
    assert rows[0][0].startswith("2026-03-08 01:59:0") and rows[0][0].endswith("-06:00") is False
    assert rows[0][0].endswith("-05:00")            # Indianapolis: EST before 02:00
    assert rows[-1][0].startswith("2026-03-08 03:0") and rows[-1][0].endswith("-04:00")
    assert {r[1] for r in rows} == {"night-0001"}


def test_hil_run_writes_the_same_export_as_events_export_of_that_rig_run(tmp_path):
    start = ["--start", "2026-06-15 22:00"]
    assert main(["hil", "run", "night", "--duration", "300", "--export", str(tmp_path / "hil")]
                + start) == 0
    assert main(["events", "export", "--rig", "night", "--duration", "300",
                 "--out", str(tmp_path / "ev")] + start) == 0
    for name in ("events.csv", "detectors.csv"):
        assert (tmp_path / "hil" / name).read_text() == (tmp_path / "ev" / name).read_text()
    rows = read_csv(tmp_path / "hil" / "events.csv")
    assert rows[1][0].startswith("2026-06-15 22:00:") and len(rows) > 100


@pytest.mark.sumo
def test_hil_sumo_writes_the_export_with_the_sumo_sites_detector_table(tmp_path):
    from hil.sumo import build as sb
    if not sb.sumo_available():
        pytest.skip("needs eclipse-sumo (the 'sumo' extra)")
    assert main(["hil", "sumo", "--duration", "120", "--start", "2026-06-15 07:00",
                 "--export", str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "events.csv")[1:]
    assert rows[0] == ["2026-06-15 07:00:00.000-04:00", "sumo-arterial", "4252", "1"]   # boot
    assert [r for r in rows if r[2] == "0"][0][:3] == ["2026-06-15 07:00:04.000-04:00",
                                                       "sumo-arterial", "0"]
    det = read_csv(tmp_path / "detectors.csv")[1:]
    assert sorted(set(r[3] for r in det)) == ["Advance", "Presence"] and len(det) == 20


def test_report_straight_from_a_units_history(tmp_path):
    pytest.importorskip("atspm")
    from hil.rig import run_actuated
    from hil.scenario import load_scenario
    from tools.export import rig_start_ms
    from edge_agent.intersection import parse_site
    sc = load_scenario("night")
    site_path = tmp_path / "site.json"
    site_path.write_text(json.dumps(sc.site))
    start = rig_start_ms(parse_site(sc.site), 0, "2026-06-15 22:00")
    h = history(tmp_path)
    for ms, code, param in run_actuated(sc, duration_s=900).events:
        h.put([(ms, code, param)], start + ms, ms)        # as the runtime does, step by step
    h.stop()
    out = tmp_path / "r.html"
    assert main(["report", "--history", str(tmp_path / "history"), "--config", str(site_path),
                 "--since", "2026-06-15 22:00", "--until", "2026-06-15 22:15", "-o", str(out)]) == 0
    page = out.read_text()
    assert "night-0001, 2026-06-15 22:00 to 22:1" in page
    assert "<h2>Purdue phase termination</h2>" in page
