"""`edge-agent run --cabinet PORT` driving an emulated TS2 Type 1 cabinet on a real pty.

The emulator (hil/cabinet_emulator.py) plays the BIUs and the MMU and keeps
a log of what its load switches drove. The agent runs as a process, exactly
as `edge-agent run` is started in a cabinet; faults are switched on from the
test once the field shows its first green: a stuck load switch, a dead BIU,
an MMU that trips, a cut Port 1 cable, corrupted frames.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from drivers import ts2_frames as ts2
from hil.cabinet_emulator import CabinetEmulator
from tests.linkrig import KID, SECRET, quick_site

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "tools.cli"]
GREEN_ONLY = (False, False, True)
# The agent runs as deploy/edge-agent.service runs it (Nice=-5), and the emulated cabinet,
# hardware of its own in the field, at the same priority: a control loop must keep its
# 100 ms cycle (the MMU flashes after 300 ms without load-switch frames, as it should), and
# on a shared 2-core CI machine other work must not starve the two of them.
NICE = -5


def _renice(who=0, nice=NICE):
    try:
        os.setpriority(os.PRIO_PROCESS, who, nice)
    except OSError:                          # not root: the normal priority
        pass


# The rig's link tolerance. On a pty the emulator's answers reach the agent through a
# kernel worker thread (the tty flip buffer), which other load on a shared 2-core machine
# can hold back for a few 100 ms cycles even when agent and emulator run on time (seen:
# "T&F BIU 1 (3 responses missed)" with the loop at most 5 ms late). The end-to-end tests
# therefore allow 10 missed cycles and 2 s without MMU status; the default limits (3
# cycles, 500 ms) are checked without I/O in test_poller_cycle_frames_timeouts_and_dead_stations.
RIG_MISS_LIMIT = 10
RIG_LINK_TIMEOUT_MS = 2000


def write_config(d, **cabinet):
    cab = {"channels": {"2": 2, "4": 4, "6": 6, "8": 8}, "ped_channels": {},
           "miss_limit": RIG_MISS_LIMIT, "link_timeout_ms": RIG_LINK_TIMEOUT_MS}
    cab.update(cabinet)
    with open(d / "site.json", "w") as f:
        json.dump({"site": quick_site(), "cabinet": cab}, f)
    with open(d / "provision.json", "w") as f:
        json.dump({"store_dir": str(d / "store"),
                   "keys": [{"kid": KID, "scheme": "hmac", "secret": SECRET}]}, f)


@pytest.fixture
def cabinet():
    # quick site: rings [2, 4] and [6, 8], barriers [2, 6] and [4, 8]
    emu = CabinetEmulator(tf_bius=2, det_bius=1, monitored=(2, 4, 6, 8),
                          permits={(2, 6), (4, 8)}, nice=NICE)
    emu.open()
    emu.start()
    yield emu
    emu.stop()


def start_agent(d, port, seconds):
    return subprocess.Popen(CLI + ["run", "--config", str(d / "site.json"), "--provision",
                                   str(d / "provision.json"), "--no-mqtt", "--cabinet", port,
                                   "--log-json", "--seconds", str(seconds)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_renice)


def finish(agent):
    _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def wait_for(cond, timeout_s):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.01)
    raise AssertionError("condition not met in %.1f s" % timeout_s)


def first_green(emu, ch):
    for ms, field in list(emu.field_log):
        if field[ch - 1] == GREEN_ONLY:
            return ms
    return None


def intervals(log, ch):
    """[(colour, duration ms)] of one channel in the emulator's field log."""
    names = {(True, False, False): "red", (False, True, False): "yellow", GREEN_ONLY: "green",
             (False, False, False): "dark"}
    out, prev, since = [], None, None
    for ms, field in log:
        c = names.get(field[ch - 1], "mixed")
        if c != prev:
            if prev is not None:
                out.append((prev, ms - since))
            prev, since = c, ms
    if prev is not None:
        out.append((prev, None))                    # still showing
    return out


def test_agent_drives_the_cabinet_green_yellow_red_at_the_plans_times(tmp_path, cabinet):
    write_config(tmp_path)
    agent = start_agent(tmp_path, cabinet.path, 9)
    logs = finish(agent)
    field, flags = cabinet.snapshot()
    assert flags == 0
    seq = intervals(cabinet.field_log, 2)
    # quick plan: min recall, min green 2.0 s, yellow 3.0 s, red clearance 0.5 s; 100 ms steps.
    # The first red is start-up all-red; green, yellow and the red until 4/8 end are whole.
    colours = [c for c, _ in seq]
    assert colours[:4] == ["red", "green", "yellow", "red"]
    # In real time a late loop skips a step (never steps twice at once), so an interval
    # may end one 100 ms step late on a loaded machine; never early.
    green, yellow = [round(ms / 100) * 100 for _, ms in seq[1:3]]
    assert green in (2000, 2100) and yellow in (3000, 3100), seq
    both = [ms for ms, f in cabinet.field_log if f[1] == GREEN_ONLY and f[3] == GREEN_ONLY]
    assert both == []                               # 2 and 4 never green together
    assert cabinet.frames_in[ts2.LOAD_SWITCH_DRIVERS] >= 80
    assert cabinet.frames_in[ts2.DATE_TIME] >= 8
    assert [r for r in logs if r["level"] in ("warning", "error")] == []


def test_detector_biu_call_holds_the_green_to_max_out(tmp_path, cabinet):
    # Detector BIU 1 channel 1 wired to site detector 2 (phase 2), held on: phase 2
    # extends past its 2.0 s min green and maxes out at max green 6.0 s.
    write_config(tmp_path, det_channels={"1": 2})
    cabinet.set_calls(1, 0b1)
    logs = finish(start_agent(tmp_path, cabinet.path, 11))
    seq = intervals(cabinet.field_log, 2)
    assert [c for c, _ in seq][:3] == ["red", "green", "yellow"], seq
    assert round(seq[1][1] / 100) * 100 in (6000, 6100), seq      # one step late at most
    assert cabinet.frames_in[ts2.CALL_DATA_REQUEST] >= 100
    assert [r for r in logs if r["level"] in ("warning", "error")] == []


def test_mmu_programmed_with_a_conflicting_pair_latches_flash_before_the_first_green(
        tmp_path, cabinet):
    cabinet.permits = {(2, 6), (4, 8), (2, 4)}          # a jumper too many on the card
    write_config(tmp_path)
    logs = finish(start_agent(tmp_path, cabinet.path, 3))
    latched = [r for r in logs if r["msg"] == "flash latched"]
    assert [(r["code"], r["reason"]) for r in latched] == [
        (23, "MMU program permits channels 2 and 4 together; the site's monitor card says "
             "they conflict")], logs
    assert first_green(cabinet, 2) is None and first_green(cabinet, 4) is None


def _fault_run(tmp_path, cabinet, inject, seconds=5, **cab):
    write_config(tmp_path, **cab)
    agent = start_agent(tmp_path, cabinet.path, seconds)
    try:
        wait_for(lambda: first_green(cabinet, 2), 8)
        t0 = cabinet.clock()
        inject(cabinet)
    except BaseException:
        agent.kill()
        raise
    logs = finish(agent)
    latched = [r for r in logs if r["msg"] == "flash latched"]
    assert len(latched) == 1 and latched[0]["level"] == "warning", logs
    return latched[0], logs, t0


def test_stuck_load_switch_latches_flash_after_the_tolerance(tmp_path, cabinet):
    latched, logs, t0 = _fault_run(tmp_path, cabinet, lambda c: c.stuck(4, GREEN_ONLY))
    m = re.fullmatch(r"phase 4 commanded red, the field shows green for (\d+) ms "
                     r"\(tolerance 500 ms\)", latched["reason"])
    # The figure runs from the step that first saw the disagreement to the arrival of the
    # first MMU reading at least 500 ms later. Readings answer the agent's 100 ms steps, so
    # it is 500 up to the next reading; in real time a reading may come one step late
    # (CI measured 601 ms), never early: latching before 500 ms fails this.
    assert m and 500 <= int(m.group(1)) < 700, latched
    assert latched["code"] == 20


def test_dead_biu_is_a_lost_link_and_flash(tmp_path, cabinet):
    # Its heads go dark, which two other guards see too: the agent's field check (500 ms)
    # and the MMU's red fail (1,000 ms, racing the rig's 10 missed cycles of 100 ms). Both
    # are set beyond the link supervision's 1 s here, so that it is the one this test sees.
    cabinet.red_fail_ms = 5_000
    latched, logs, _ = _fault_run(tmp_path, cabinet, lambda c: c.dead_biu(1), tolerance_ms=2000)
    assert latched["reason"] == "cabinet link lost: T&F BIU 1 (10 responses missed)"
    assert latched["code"] == 22
    lost = [r for r in logs if r["msg"].startswith("cabinet link lost")]
    assert lost and lost[0]["level"] == "warning"


def test_mmu_trip_latches_flash_with_the_mmus_reason(tmp_path, cabinet):
    latched, logs, _ = _fault_run(tmp_path, cabinet, lambda c: c.trip(ts2.MMU_CONFLICT))
    assert latched["reason"] == "MMU reports conflict, failed, output relay transferred"
    assert latched["code"] == 21


def test_cut_port1_cable_the_mmu_flashes_and_the_agent_latches_flash(tmp_path, cabinet):
    latched, logs, t0 = _fault_run(tmp_path, cabinet, lambda c: c.cut_cable())
    assert latched["code"] == 22
    # Ten missed cycles normally; on a loaded machine skipped steps can make the
    # 2 s status timeout the first to see it. Either way: link lost, flash. The cut can
    # land inside a command cycle, after the BIUs answered and before the MMU status
    # request (sent last): then the MMU is one miss ahead and reaches ten alone.
    assert re.fullmatch(r"cabinet link lost: MMU \(10 responses missed\)"
                        r"(, T&F BIU 1 \(10 responses missed\))?"
                        r"(, T&F BIU 2 \(10 responses missed\))?", latched["reason"]) or \
        re.fullmatch(r"cabinet link lost: no MMU status for 20\d\d ms", latched["reason"]), latched
    field, flags = cabinet.snapshot()
    assert flags & ts2.MMU_PORT1_TIMEOUT            # the MMU's own watchdog flashed the field
    flashing = [f for ms, f in cabinet.field_log if ms > t0]
    assert flashing and all(ch == (f[0][0], False, False) for f in flashing for ch in f)


def test_corrupted_and_garbage_frames_are_counted_and_do_not_flash(tmp_path, cabinet):
    from tools.cmd_run import build_runtime
    write_config(tmp_path)
    cabinet.corrupt_rate = 0.05
    cabinet.garbage_rate = 0.05
    # The runtime runs in this thread (its reader thread inherits the priority).
    me = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, me)
    _renice(me)
    try:
        rt = build_runtime(str(tmp_path / "site.json"), str(tmp_path / "provision.json"),
                           mqtt=False, cabinet=cabinet.path)
        rt.run(max_steps=60)
    finally:
        _renice(me, before)
    cab = [s for s in rt.sources if getattr(s, "name", "") == "cabinet"][0]
    st = cab.stats()
    assert rt.out.fault is None
    # Garbage right after a closing flag lands inside the next "frame", so it is
    # counted where it fails (FCS, escape, length), not as bytes outside frames.
    assert st["fcs_errors"] + st["bad_escape"] + st["too_short"] + st["garbage_bytes"] > 0, st
    assert st["timeouts"] > 0
    # 60 cycles x 4 responses (MMU 128, 129, BIU 138, 139) = 240. A corrupted response
    # loses its frame; a garbage burst can lose two (its own and the next): at most 15 %
    # expected, 204 frames. The floor of 180 (75 %) also leaves room for responses a
    # loaded machine delivers after their timeout; a fresh run once parsed 198.
    assert st["frames"] >= 180, st


# -- the poller without I/O ---------------------------------------------------------------

class _Out:
    def __init__(self, mode=2):
        from edge_agent.indications import RED, GREEN, DONT_WALK
        self.vehicle = [0] + [RED] * 16
        self.vehicle[2] = GREEN
        self.ped = [0] + [DONT_WALK] * 16
        self.mode = mode


def test_poller_detector_biu_calls_become_detector_inputs():
    from drivers.cabinet import CabinetConfig, CabinetPoller
    p = CabinetPoller(CabinetConfig({"port": "x", "det_channels": {"1": 4, "3": 8, "17": 2},
                                     "det_bius": 2}))
    wire = (ts2.encode(ts2.CALL_DATA, ts2.call_data(0b101, 0b001))           # BIU 1: ch 1 new, 3 on
            + ts2.encode(ts2.CALL_DATA + 1, ts2.call_data(0b1, 0b0)))        # BIU 2: ch 17 held
    p.feed(wire, 1000)
    assert p.detector_calls() == ({4: True, 8: True, 2: True}, {4: 1})


def test_poller_cycle_frames_timeouts_and_dead_stations():
    from drivers.cabinet import CabinetConfig, CabinetPoller
    p = CabinetPoller(CabinetConfig({"port": "x", "tf_bius": 1, "channels": {"2": 2},
                                     "ped_channels": {}}))
    frames = ts2.FrameParser().feed(p.cycle(0, _Out(), wall_s=1_795_680_000.25))
    assert [f.type for f in frames] == [0, 10, 18, 1, 3, 9]
    drive, flash = ts2.parse_load_switch_drivers(frames[0].data)
    assert drive[2] == (False, False, True) and flash is False
    assert frames[5].data[:7] == bytes((11, 26, 26, 8, 0, 0, 2))   # 2026-11-26 08:00:00.2 UTC
    p.feed(ts2.encode(ts2.LOAD_SWITCH_ACK) + ts2.encode(ts2.MMU_STATUS,
                                                        ts2.mmu_status(0b10, 0, 0, 0))
           + ts2.encode(ts2.MMU_PROGRAM, ts2.mmu_program(set())), 50)
    for k in range(1, 3):                           # the BIU never answers
        p.cycle(100 * k, _Out())
        p.feed(ts2.encode(ts2.LOAD_SWITCH_ACK) + ts2.encode(ts2.MMU_STATUS,
                                                            ts2.mmu_status(0b10, 0, 0, 0)),
               100 * k + 5)
    assert p.dead_stations() == []
    p.cycle(300, _Out())                            # its third miss
    assert p.dead_stations() == ["T&F BIU 1 (3 responses missed)"]
    r = p.report(300)
    assert (r.link_ok, r.link_detail) == (False, "T&F BIU 1 (3 responses missed)")
    assert r.green == 1 << 2                      # channel 2 (MMU bit 1) is phase 2
    assert p.counters["timeouts"] == 3
    assert p.report(1000).link_detail == "no MMU status for 795 ms"


def test_bad_cabinet_wiring_is_refused_with_every_problem_at_once(tmp_path):
    write_config(tmp_path, channels={"2": 2, "4": 2, "9": 5}, tf_bius=9, det_channels={"1": 7},
                 tolerance_ms="soon", colour="red")
    r = subprocess.run(CLI + ["run", "--config", str(tmp_path / "site.json"), "--provision",
                              str(tmp_path / "provision.json"), "--no-mqtt", "--cabinet",
                              "/dev/null"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "edge-agent run: config cabinet:",
        "  cabinet.colour: unknown key (known: port, baudrate, channels, ped_channels, "
        "det_channels, tf_bius, det_bius, tolerance_ms, link_timeout_ms, miss_limit)",
        "  cabinet.tf_bius: 9 is not a whole number 1..4",
        "  cabinet.tolerance_ms: 'soon' is not a whole number 100..10000",
        "  cabinet.channels[4]: channel 2 already drives channels[2]",
        "  cabinet.channels: site phase 6 has no load-switch channel",
        "  cabinet.channels: site phase 8 has no load-switch channel",
        "  cabinet.channels[9]: the site has no phase 9",
        "  cabinet.det_channels[1]: the site has no detector 7"], r.stderr


def test_poller_asks_for_the_mmu_program_until_it_answers_then_every_10_s():
    from drivers.cabinet import CabinetConfig, CabinetPoller
    p = CabinetPoller(CabinetConfig({"port": "x", "tf_bius": 1, "channels": {"2": 2},
                                     "ped_channels": {}}))

    def types(now):
        return [f.type for f in ts2.FrameParser().feed(p.cycle(now, _Out()))]

    assert ts2.MMU_PROGRAM_REQUEST in types(0)
    assert ts2.MMU_PROGRAM_REQUEST in types(100)          # no answer yet: ask again
    p.feed(ts2.encode(ts2.MMU_PROGRAM, ts2.mmu_program({(2, 6)})), 150)
    asked = [t for t in range(200, 20_200, 100) if ts2.MMU_PROGRAM_REQUEST in types(t)]
    assert asked == [10_100, 20_100]
