"""End to end over a real pseudo-terminal: simulator -> card emulator -> pty -> driver -> agent.

The suburban scenario's twelve vehicle detectors all come through one
emulated card (card channel = site channel); push buttons stay wired. The
rig runs in virtual time: each 100 ms step the simulator moves, the emulator
writes the frames due, the driver reads them from the pty (the harness waits
until every byte written has been read) and stamps them with the step time.
Each emulator fault is switched on at 20.0 s, one per run; the detector must
fault within its configured limit with the right Indiana code, its phase
must go on fail recall, and the independent safety checker must see every
step.
"""

import copy
import time

import pytest

from edge_agent import events as ev
from edge_agent.agent import Agent, Inputs
from edge_agent.indications import MAX_PHASES, RED
from edge_agent.intersection import parse_site
from drivers.serial_detector import SerialDetectorCard
from drivers.sources import preempt_inputs_into
from hil.card_emulator import CardEmulator
from hil.scenario import load_scenario
from hil.sim import IntersectionSim
from tests.safety_checker import SafetyChecker

FAULT_AT = 20_000
LIMITS = {"watchdog": 1.0, "erratic": 60, "restore": 3.0}
STUCK = 12          # phase 2's advance loop: in this demand it is never occupied 6 s


class Rig:
    """The closed loop of one run, stepped by hand."""

    def __init__(self, tmp_path, card_opts=None, limits=LIMITS, only=None, seed=7, preempts=None,
                 card_inputs=None):
        sc = load_scenario("suburban")
        site = copy.deepcopy(sc.site)
        if preempts:
            site["preempts"] = preempts
        for d in site["detectors"]:
            d.update(limits)
            d.update((only or {}).get(d["channel"], {}))
        self.site_dict = site
        self.site = parse_site(site)
        self.agent = Agent(self.site)
        self.sim = IntersectionSim(sc, seed)
        self.checker = SafetyChecker(site, [site["fallback_plan"]])
        self.phase_of = {d["channel"]: d["phase"] for d in site["detectors"]}
        chans = sorted(self.phase_of)
        self.link = str(tmp_path / "card0")
        self.emu = CardEmulator(chans, link=self.link, **(card_opts or {}))
        self.emu.open()
        self.now = 0
        self.card = SerialDetectorCard(self.link, source="card0", channels={c: c for c in chans},
                                       clock=lambda: self.now, backoff_s=(0.0, 0.0),
                                       **(card_inputs or {"preempts": {
                                           p["number"]: p["number"] for p in preempts or ()}}))
        self.log = []
        self.shown = [RED] * (MAX_PHASES + 1)
        self.k = 0
        self.read_base = 0

    def sync(self):
        """Wait until the driver has read every byte the emulator wrote (pty latency)."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if self.card.ser is None:
                self.card.poll(0)
                if self.card.ser is None:
                    return
                self.read_base = self.card.parser.stats["bytes"] - self.emu.sent["bytes"]
            target = self.emu.sent["bytes"] - self.emu.sent["overflow"] + self.read_base
            if self.card.parser.stats["bytes"] >= target:
                return
            self.card.poll(0.002)
        raise AssertionError("driver did not read the bytes written within 1 s: %r"
                             % (self.card.stats(),))

    def step(self):
        t = self.now
        inputs = self.sim.step(t, self.shown)
        log = self.sim.detector_log
        self.emu.observe(log[self.k:])
        self.k = len(log)
        self.emu.tick(t)
        self.sync()
        step_inputs = Inputs(reports=self.card.reports() or None, peds=inputs.peds)
        preempt_inputs_into(step_inputs, self.card.preempt_inputs())
        out = self.agent.step(t, step_inputs)
        self.checker.check(t, out)
        self.log.extend(out.events)
        self.shown = out.vehicle
        self.now += 100
        return out

    def run_until(self, t_ms, at=None):
        while self.now <= t_ms:
            if at and self.now in at:
                at[self.now](self)
            self.step()

    def times(self, code, param):
        return [e[0] for e in self.log if e[1] == code and e[2] == param]

    def faults(self):
        return sorted((e[0], e[1], e[2]) for e in self.log if 84 <= e[1] <= 88)

    def close(self):
        self.card.stop()
        self.emu.unplug()


@pytest.fixture
def rig_factory(tmp_path):
    rigs = []

    def make(**kw):
        r = Rig(tmp_path, **kw)
        rigs.append(r)
        return r
    yield make
    for r in rigs:
        r.close()


def test_healthy_card_feeds_the_agent_with_no_fault_and_no_lost_frame(rig_factory):
    rig = rig_factory()
    rig.run_until(60_000)
    assert rig.faults() == []
    st = rig.card.stats()
    assert st["crc_errors"] == st["sequence_gaps"] == st["garbage_bytes"] == 0
    assert st["frames"] > 600
    # The detector events the agent logged are the loops' own edges, step-quantized.
    assert len([e for e in rig.log if e[1] == ev.DETECTOR_ON]) > 30
    assert all(s["state"] == "ok" for s in rig.agent.detectors.status(rig.now))


def test_stuck_on_channel_faults_at_max_presence_and_its_phase_goes_on_max_recall(rig_factory):
    rig = rig_factory(only={STUCK: {"max_presence": 0.1}})      # 6 s
    rig.run_until(40_000, at={FAULT_AT: lambda r: r.emu.stuck_on(STUCK)})
    got = rig.times(ev.DETECTOR_FAULT_OTHER, STUCK)
    assert got == [FAULT_AT + 6_000], got             # stuck from the 20.0 s frame on
    assert rig.agent.detectors.fail_max & (1 << rig.phase_of[STUCK])
    assert [f for f in rig.faults() if f[2] != STUCK] == []


def test_chattering_channel_faults_on_erratic_counts(rig_factory):
    rig = rig_factory()
    rig.run_until(30_000, at={FAULT_AT: lambda r: r.emu.chatter(4, 100)})
    # 60 counts per minute allowed. The card's counts frame at 25.0 s holds 49
    # counts in 5 s (588 per minute): it trips before the 61st presence edge (26.1 s).
    got = rig.times(ev.DETECTOR_FAULT_CHATTER, 4)
    assert got == [25_000], got
    assert rig.agent.detectors.fail_max & (1 << rig.phase_of[4])


def test_dead_card_faults_every_channel_by_watchdog_then_restores(rig_factory):
    def revive(r):
        r.emu.dead = False

    def kill(r):
        r.emu.dead = True
    rig = rig_factory()
    rig.run_until(40_000, at={FAULT_AT: kill, 30_000: revive})
    for ch in rig.phase_of:
        got = rig.times(ev.DETECTOR_FAULT_WATCHDOG, ch)
        # The last presence frame went out at 19.9 s (10 Hz): + 1.0 s watchdog.
        assert got == [20_900], (ch, got)
        assert rig.times(ev.DETECTOR_RESTORED, ch) == [30_000 + 3_000]
    assert rig.agent.detectors.fail_max == 0


def test_open_and_shorted_loops_reported_by_the_card_log_86_and_87(rig_factory):
    def faults(r):
        r.emu.open_loop(6)
        r.emu.shorted_loop(8)
    rig = rig_factory()
    rig.run_until(25_000, at={FAULT_AT: faults})
    # Status frames go out every second: the one at 20.0 s carries the bits.
    assert rig.times(ev.DETECTOR_FAULT_OPEN, 6) == [20_000]
    assert rig.times(ev.DETECTOR_FAULT_SHORTED, 8) == [20_000]
    assert rig.agent.detectors.fail_max == (1 << rig.phase_of[6]) | (1 << rig.phase_of[8])


def test_line_noise_is_counted_and_faults_nothing(rig_factory):
    def noise(r):
        r.emu.bit_error_rate = 0.05
        r.emu.garbage_rate = 0.05
        r.emu.drop_rate = 0.05
        r.emu.dup_rate = 0.05
    rig = rig_factory(card_opts={"seed": 3})
    rig.run_until(60_000, at={FAULT_AT: noise})
    st = rig.card.stats()
    sent = rig.emu.sent
    assert rig.faults() == []
    assert st["crc_errors"] + st["bad_escape"] + st["bad_length"] + st["truncated"] \
        + st["malformed"] >= sent["corrupted"] * 0.9
    # A duplicate of a corrupted frame is dropped by its CRC, not as a duplicate.
    assert sent["duplicated"] * 0.8 <= st["duplicates"] <= sent["duplicated"]
    assert st["sequence_gaps"] > 0 and st["lost_frames"] >= sent["dropped"]
    assert st["garbage_bytes"] > 0


def test_jittery_slow_card_at_2_hz_faults_nothing(rig_factory):
    rig = rig_factory(card_opts={"period_ms": 500, "jitter_ms": 150})
    rig.run_until(60_000)
    assert rig.faults() == []


def test_unplugged_adapter_reports_stale_reopens_and_restores(rig_factory):
    rig = rig_factory()
    rig.run_until(40_000, at={FAULT_AT: lambda r: r.emu.unplug(),
                              25_000: lambda r: r.emu.replug()})
    st = rig.card.stats()
    assert st["port_lost"] == 1 and st["reopened"] == 1
    for ch in rig.phase_of:
        # Last frame read at 19.9 s; 1.0 s watchdog; frames again from 25.1 s; 3 s restore.
        assert rig.times(ev.DETECTOR_FAULT_WATCHDOG, ch) == [20_900], ch
        assert rig.times(ev.DETECTOR_RESTORED, ch) == [28_100], ch


def test_short_unplug_within_the_watchdog_faults_nothing(rig_factory):
    rig = rig_factory()
    rig.run_until(30_000, at={FAULT_AT: lambda r: r.emu.unplug(),
                              20_500: lambda r: r.emu.replug()})
    assert rig.faults() == []
    assert rig.card.stats()["reopened"] == 1


PREEMPT = [{"number": 1, "dwell_phases": [2, 6], "min_dwell": 10.0, "exit_phases": [2, 6]}]


def test_card_preempt_input_calls_and_releases_preempt_1(rig_factory):
    r = rig_factory(preempts=PREEMPT)
    r.run_until(60_000, at={20_000: lambda rig: rig.emu.preempt(1, True),
                            40_000: lambda rig: rig.emu.preempt(1, False)})
    # The input is sent with the presence frame of the same 100 ms period.
    assert r.times(ev.PREEMPT_CALL_ON, 1) == [20_000]
    assert r.times(ev.PREEMPT_ENTRY, 1) == [20_000]
    assert len(r.times(ev.PREEMPT_DWELL, 1)) == 1
    assert r.times(ev.PREEMPT_CALL_OFF, 1) == [40_000]
    assert r.times(ev.PREEMPT_EXIT, 1) == [40_000]


RAIL = [{"number": 1, "type": "railroad", "track_phases": [4, 8], "track_green": 10.0,
         "dwell_phases": [2, 6], "min_dwell": 10.0, "exit_phases": [2, 6]}]


def test_card_inputs_wired_to_advance_warning_and_gate_down(rig_factory):
    # Card input 1: the crossing's advance warning, 2: its preempt call, 3: gate down.
    r = rig_factory(preempts=RAIL, card_inputs={"advance_warnings": {1: 1}, "preempts": {2: 1},
                                                "gate_downs": {3: 1}})
    r.run_until(50_000, at={15_000: lambda rig: rig.emu.preempt(1, True),
                            20_000: lambda rig: rig.emu.preempt(2, True),
                            30_000: lambda rig: rig.emu.preempt(3, True),
                            40_000: lambda rig: [rig.emu.preempt(k, False) for k in (1, 2, 3)]})
    assert r.times(ev.PREEMPT_ADVANCE_WARNING, 1) == [15_000]
    assert r.times(ev.PREEMPT_CALL_ON, 1) == [20_000]
    assert r.times(ev.PREEMPT_ENTRY, 1) == [20_000]
    assert r.times(ev.PREEMPT_GATE_DOWN, 1) == [30_000]
    assert r.times(ev.PREEMPT_CALL_OFF, 1) == [40_000]


def test_a_card_input_mapped_twice_is_refused():
    with pytest.raises(ValueError, match=r"^card preempt input 2 is in both preempts and "
                                         r"gate_downs$"):
        SerialDetectorCard("/nonexistent", preempts={2: 1}, gate_downs={2: 1})


def test_a_card_that_goes_silent_releases_its_preempt_input(rig_factory):
    # Last preempt frame read at 24.9 s; 1.0 s preempt watchdog: off at 26.0 s.
    r = rig_factory(preempts=PREEMPT)
    r.run_until(30_000, at={20_000: lambda rig: rig.emu.preempt(1, True),
                            25_000: lambda rig: rig.emu.unplug()})
    assert r.times(ev.PREEMPT_CALL_ON, 1) == [20_000]
    assert r.times(ev.PREEMPT_CALL_OFF, 1) == [26_000]
