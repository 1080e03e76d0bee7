"""An evil controller against the monitor: it must latch exactly when a rule first breaks.

A hypothesis RuleBasedStateMachine plays a controller that shows anything on
any channel for any time: legal moves timed at, just under and just over each
limit, arbitrary indications (dark, flash, values no lamp has), pedestrian
heads, whole-cabinet flash and all-red. After every step the test's own
checker (tests/mmu_checker.py, no code shared with the monitor) says whether
a rule was broken; the monitor must latch in exactly that step, and never
otherwise. After a latch both are reset and the stream goes on. Legal streams
from the real controller are checked in tests/test_safety.py (the monitor
never trips there, and this checker agrees step by step).

CI runs >= 10^6 monitor steps; EDGE_AGENT_SOAK=1 ten times more. The counts are
printed by the last test of this file (run pytest with -s to see them).
"""

import os
import random

import pytest

from hypothesis import settings, HealthCheck, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, initialize

from edge_agent.monitor import Monitor, FAULT_NAMES
from edge_agent.standard import standard_site
from edge_agent.indications import (DARK, RED, YELLOW, GREEN, FLASH_RED, FLASH_YELLOW,
                                    DONT_WALK, WALK, PED_CLEAR, PED_DARK)
from tests.mmu_checker import MmuChecker

SOAK = os.environ.get("EDGE_AGENT_SOAK") == "1"
EXAMPLES = 4_000 if SOAK else 400
STEPS_PER_EXAMPLE = 50           # rule calls; each rule call runs a burst of monitor steps
COUNTS = {"steps": 0, "latches": 0, "examples": 0, "rules": {}}


def cards():
    """The standard card, and a variant with uneven minimums, a flash-yellow pair and
    pedestrian heads on other channels (so no limit is shared by every channel)."""
    a = standard_site()
    b = standard_site()
    for e in b["monitor"]["channels"]:
        ch = e["channel"]
        e["min_yellow"] = 3.0 + 0.5 * (ch % 3)
        e["min_red_clear"] = 0.5 * (ch % 4)
        e["red_revert"] = 1.0 + 0.5 * (ch % 2)
        e["min_green"] = 0.0 if ch == 7 else 2.0 + ch
    b["monitor"]["flash"]["yellow"] = [2, 6]
    return [a["monitor"], b["monitor"]]


CARDS = cards()
def parse_card_only(raw):
    """The card alone (the variant's minimums are above the example plan's)."""
    from edge_agent.validate import Checker
    from edge_agent.monitor_card import parse_card
    c = Checker()
    k = parse_card(c, {"monitor": raw})
    c.raise_if_any()
    return k


VEHICLE = [RED, YELLOW, GREEN, FLASH_RED, FLASH_YELLOW, DARK, 6, -1]
PEDS = [DONT_WALK, WALK, PED_CLEAR, PED_DARK, 4]
NEXT = {RED: GREEN, GREEN: YELLOW, YELLOW: RED, FLASH_RED: RED, FLASH_YELLOW: RED}
PED_NEXT = {DONT_WALK: WALK, WALK: PED_CLEAR, PED_CLEAR: DONT_WALK, PED_DARK: DONT_WALK}


class EvilController(RuleBasedStateMachine):
    """Drives a Monitor and the independent checker with the same streams."""

    @initialize(which=st.integers(0, len(CARDS) - 1))
    def power_up(self, which):
        self.raw = CARDS[which]
        self.card = parse_card_only(self.raw)
        self.chans = [e["channel"] for e in self.raw["channels"]]
        self.limits = sorted(set(v for e in self.raw["channels"] for k, v in e.items()
                                 if isinstance(v, float)))
        self.now = 0
        self.monitor = Monitor(self.card, 0)
        self.checker = MmuChecker(self.raw, 0)
        self.veh = [0] + [FLASH_RED] * 16
        self.ped = [PED_DARK] * 17
        COUNTS["examples"] += 1

    def dt(self, rng):
        """Time to the next step: often exactly at, or 1 ms / 100 ms either side of, a limit."""
        x = rng.random()
        if x < 0.6:
            base = int(round(rng.choice(self.limits) * 1000))
            return max(1, base + rng.choice((-100, -1, 0, 0, 1, 100)))
        if x < 0.8:
            return rng.choice((1, 10, 100))
        return rng.randint(1, 20_000)

    def step(self):
        verdict = self.checker.verdict(self.now, self.veh, self.ped)
        fault = self.monitor.check(self.now, self.veh, self.ped)
        COUNTS["steps"] += 1
        assert (verdict is None) == (fault is None), \
            "at %d ms the checker says %r, the monitor %r (veh %r ped %r)" % (
                self.now, verdict, fault, self.veh[1:9], self.ped[1:9])
        if fault is not None:
            COUNTS["latches"] += 1
            COUNTS["rules"][fault.rule] = COUNTS["rules"].get(fault.rule, 0) + 1
            # A technician resets: both start again from power-up flash.
            self.now += 1
            self.monitor.reset(self.now)
            self.checker.reset(self.now)
            self.veh = [0] + [FLASH_RED] * 16
            self.ped = [PED_DARK] * 17

    @rule(seed=st.integers(0, 2 ** 32 - 1), n=st.integers(1, 1_000))
    def mostly_legal_burst(self, seed, n):
        """Channels move along green -> yellow -> red -> green, peds along their cycle,
        timed around the limits; now and then a move is wrong on purpose."""
        rng = random.Random(seed)
        for _ in range(n):
            ch = rng.choice(self.chans)
            x = rng.random()
            v = self.veh[ch]
            if any(self.veh[c] not in (RED, GREEN, YELLOW) for c in self.chans) and x < 0.9:
                self.all_red()                      # leave flash through all-red
            elif x < 0.6:
                nxt = NEXT.get(v, RED)
                busy = [c for c in self.chans if c != ch and self.veh[c] in (GREEN, YELLOW)
                        and not self.card.permits(ch, c)]
                if nxt == GREEN and busy and rng.random() < 0.95:
                    pass                            # a sane controller waits its turn
                elif nxt == RED and self.ped[ch] in (WALK, PED_CLEAR) and rng.random() < 0.95:
                    pass
                elif nxt == YELLOW and self.ped[ch] in (WALK, PED_CLEAR) and rng.random() < 0.9:
                    self.ped[ch] = PED_NEXT[self.ped[ch]]
                else:
                    self.veh[ch] = nxt
                    if nxt == GREEN and self.card.ped[ch] and rng.random() < 0.5:
                        self.ped[ch] = WALK
            elif x < 0.8 and self.card.ped[ch]:
                if self.veh[ch] == GREEN or rng.random() < 0.05:
                    self.ped[ch] = PED_NEXT.get(self.ped[ch], DONT_WALK)
            elif x < 0.82:
                self.all_red()
            elif x < 0.84:
                self.veh[ch] = rng.choice(VEHICLE)
            elif x < 0.86:
                self.ped[ch] = rng.choice(PEDS)
            self.now += self.dt(rng)
            self.step()

    def all_red(self):
        self.veh = [0] + [RED] * 16
        self.ped = [PED_DARK] + [DONT_WALK] * 16

    @rule(ch=st.integers(1, 8), v=st.sampled_from(VEHICLE), ms=st.integers(0, 30_000))
    def show_anything(self, ch, v, ms):
        self.veh[ch] = v
        self.now += ms
        self.step()

    @rule(ch=st.integers(1, 8), p=st.sampled_from(PEDS), ms=st.integers(0, 30_000))
    def show_any_ped(self, ch, p, ms):
        self.ped[ch] = p
        self.now += ms
        self.step()

    @rule(yellow=st.booleans(), ms=st.integers(0, 10_000))
    def whole_cabinet_flash(self, yellow, ms):
        self.veh = [0] + [FLASH_RED] * 16
        if yellow:
            for ch in self.card.channels:
                if self.card.flash_yellow & (1 << ch):
                    self.veh[ch] = FLASH_YELLOW
        self.ped = [PED_DARK] * 17
        self.now += ms
        self.step()


TestEvilController = EvilController.TestCase
TestEvilController.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS_PER_EXAMPLE, deadline=None,
    derandomize=not SOAK, suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.filter_too_much])


def test_zz_adversarial_step_count_is_reported_and_enough():
    """Runs after the machine (file order): >= 10^6 steps in CI, every rule seen latching."""
    print("\nadversarial monitor steps: %d in %d examples, %d latches, by rule: %s"
          % (COUNTS["steps"], COUNTS["examples"], COUNTS["latches"],
             ", ".join("%s %d" % kv for kv in sorted(COUNTS["rules"].items()))))
    if COUNTS["examples"] == 0:
        pytest.skip("the state machine was deselected (-k): no steps to count")
    assert COUNTS["steps"] >= (10 ** 7 if SOAK else 10 ** 6)
    seen = set(COUNTS["rules"])
    expected = set(FAULT_NAMES[c] for c in (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12))
    assert expected <= seen, "rules never exercised: %s" % sorted(expected - seen)
