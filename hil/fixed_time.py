"""Fixed-time (pretimed) baseline: Webster cycle, splits by flow ratio, dual-ring sequence.

The plan is built from the scenario's demand and from the clearances and min
greens of its site's actuated fallback plan:

- flow ratio of a phase y = max over its movements of v / (lanes · s), v the
  mean demand over the period the plan is for;
- per barrier group the ring with the larger sum of y is critical; Y is the
  sum of the critical sums; L is the sum of the lost times of the critical
  phases, lost time per phase = start-up lost time + yellow + red clearance −
  yellow still used by drivers (with the defaults: yellow + red clearance);
- Webster: C0 = (1.5 L + 5) / (1 − Y), clamped to [60, 150] s and rounded up
  to a whole second;
- effective green C − L shared among the critical phases in proportion to y,
  each barrier group as long as its critical ring needs, the other ring's
  phases sharing the same group time in proportion to y; no green shorter
  than the phase's min green, nor (for a pedestrian phase) than walk +
  pedestrian clearance, which the pretimed plan serves every cycle. If the
  minimums do not fit the cycle grows.

Sequence: the site's rings and barriers, phases in ring order (standard
1-2 | 3-4 over 5-6 | 7-8: leading lefts). Each green is followed by its full
yellow and red clearance; both rings cross a barrier together.
"""

import math

from edge_agent import events as ev
from edge_agent.indications import (DARK, DONT_WALK, FLASH_RED, GREEN, MAX_PHASES, PED_CLEAR,
                                    PED_DARK, RED, WALK, YELLOW)

from hil.scenario import load_scenario

CYCLE_MIN_S = 60.0
CYCLE_MAX_S = 150.0


def webster_cycle_s(lost_time_s, flow_ratio_sum, min_s=CYCLE_MIN_S, max_s=CYCLE_MAX_S):
    """Webster's optimum cycle C0 = (1.5 L + 5) / (1 − Y), clamped to [min_s, max_s]."""
    if flow_ratio_sum >= 1.0:
        return float(max_s)
    c0 = (1.5 * lost_time_s + 5.0) / (1.0 - flow_ratio_sum)
    return float(min(max(c0, min_s), max_s))


def critical_flow_ratios(flow_ratios, rings, barriers):
    """(Y, critical phases) of a ring-barrier structure for per-phase flow ratios {phase: y}."""
    total, critical = 0.0, []
    for group in barriers:
        best, best_phases = -1.0, []
        for ring in rings:
            phases = [p for p in ring if p in group and p in flow_ratios]
            s = sum(flow_ratios[p] for p in phases)
            if phases and s > best:
                best, best_phases = s, phases
        if best_phases:
            total += best
            critical.extend(best_phases)
    return total, critical


def phase_flow_ratios(scenario, start_tod_ms=None, duration_ms=3_600_000):
    """{phase: y} from the mean demand over [start, start + duration) of each movement."""
    sc = load_scenario(scenario)
    tod = sc.start_tod_ms if start_tod_ms is None else start_tod_ms
    y = {}
    for m in sc.movements:
        v = m.profile.mean(tod, duration_ms)
        ratio = v / (m.lanes * m.sat_flow_vphpl)
        y[m.phase] = max(y.get(m.phase, 0.0), ratio)
    return y


class PhaseTiming:
    """Where a phase sits in the fixed-time cycle (all ms)."""

    __slots__ = ("phase", "start", "green", "yellow", "red_clear", "walk", "ped_clear")

    def __repr__(self):
        return (f"PhaseTiming({self.phase}: start {self.start}, green {self.green}, "
                f"yellow {self.yellow}, red {self.red_clear})")


class FixedTimePlan:
    """A pretimed plan: cycle, per-phase timings, and how it was derived."""

    __slots__ = ("cycle_ms", "webster_s", "flow_ratio_sum", "lost_time_s", "critical_phases",
                 "flow_ratios", "timings", "rings", "startup_flash_ms", "startup_all_red_ms")

    def split_s(self, phase):
        """Green + yellow + red clearance of a phase, in seconds."""
        t = self.timings[phase]
        return (t.green + t.yellow + t.red_clear) / 1000

    def describe(self):
        """One line per phase, for reports."""
        lines = [f"cycle {self.cycle_ms / 1000:.1f} s (Webster {self.webster_s:.1f} s, "
                 f"Y = {self.flow_ratio_sum:.3f}, L = {self.lost_time_s:.1f} s)"]
        for p in sorted(self.timings):
            t = self.timings[p]
            lines.append(f"  phase {p}: start {t.start / 1000:5.1f} s, green {t.green / 1000:5.1f} s, "
                         f"yellow {t.yellow / 1000:.1f} s, red {t.red_clear / 1000:.1f} s, "
                         f"y = {self.flow_ratios.get(p, 0.0):.3f}")
        return lines


def _share(total_ms, phases, y, mins):
    """Split total_ms of green among phases in proportion to y, none below its minimum."""
    fixed = {}
    while True:
        free = [p for p in phases if p not in fixed]
        left = total_ms - sum(fixed.values())
        wsum = sum(y.get(p, 0.0) for p in free)
        out = dict(fixed)
        for p in free:
            w = y.get(p, 0.0) / wsum if wsum > 0 else 1.0 / len(free)
            out[p] = left * w
        low = [p for p in free if out[p] < mins[p]]
        if not low:
            return out
        for p in low:
            fixed[p] = mins[p]


def fixed_time_plan(scenario, duration_s=None, start_tod_ms=None):
    """The Webster fixed-time plan for the scenario's demand over the run period."""
    sc = load_scenario(scenario)
    site = sc.site
    md = sc.model
    dur_ms = round((duration_s if duration_s is not None else sc.duration_s) * 1000)
    ped_phase = {ph["phase"]: bool(ph.get("ped")) for ph in site["phases"]}
    timing = {ph["phase"]: ph for ph in site["fallback_plan"]["phases"] if not ph.get("omit")}
    rings = [[p for p in ring if p in timing] for ring in site["rings"]]
    barriers = [[p for p in grp if p in timing] for grp in site["barriers"]]

    y_all = phase_flow_ratios(sc, start_tod_ms, dur_ms)
    y = {p: y_all.get(p, 0.0) for p in timing}
    Y, critical = critical_flow_ratios(y, rings, barriers)

    def ms(s):
        return round(s * 1000)

    inter = {p: ms(timing[p]["yellow"]) + ms(timing[p]["red_clear"]) for p in timing}
    lost_extra = ms(md["startup_lost_s"]) - ms(md["yellow_entry_s"])
    lost = {p: inter[p] + lost_extra for p in timing}
    L_ms = sum(lost[p] for p in critical)
    c_web = webster_cycle_s(L_ms / 1000, Y)
    cycle = math.ceil(round(c_web, 6)) * 1000
    mins = {}
    for p in timing:
        m = ms(timing[p]["min_green"])
        if ped_phase.get(p):
            m = max(m, ms(timing[p].get("walk", 0)) + ms(timing[p].get("ped_clear", 0)))
        mins[p] = m

    # Green ratio of each critical phase at the Webster cycle; when minimum greens
    # lengthen a barrier group the cycle grows and these ratios are kept, so no
    # phase runs at a higher degree of saturation than Webster's plan gives it.
    eff = cycle - L_ms
    n_crit = max(1, len(critical))
    ratio = {p: ((eff * y[p] / Y) if Y > 0 else eff / n_crit) / cycle for p in critical}
    groups = []
    for group in barriers:
        ring_phases = [r for r in ([p for p in ring if p in group] for ring in rings) if r]
        groups.append((ring_phases, [p for p in critical if p in group]))

    def group_length(ring_phases, crit, c):
        need = sum(max(mins[p], ratio[p] * c + lost_extra) + inter[p] for p in crit)
        return max([need] + [sum(mins[p] + inter[p] for p in r) for r in ring_phases])

    c = float(cycle)
    for _ in range(200):
        c_new = sum(group_length(r, k, c) for r, k in groups)
        if abs(c_new - c) < 1.0:
            c = c_new
            break
        c = c_new

    plan = FixedTimePlan()
    plan.timings = {}
    start = 0
    for ring_phases, crit in groups:
        length = group_length(ring_phases, crit, c)
        length = int(math.ceil(length / 100.0) * 100)
        while True:
            placed = _place_group(start, length, ring_phases, y, mins, inter, timing, ped_phase)
            short = max(mins[r[-1]] - placed[r[-1]].green for r in ring_phases)
            if short <= 0:
                break
            length += int(math.ceil(short / 100.0) * 100)
        plan.timings.update(placed)
        start += length
    plan.cycle_ms = start
    plan.webster_s = c_web
    plan.flow_ratio_sum = Y
    plan.lost_time_s = L_ms / 1000
    plan.critical_phases = critical
    plan.flow_ratios = y
    plan.rings = rings
    su = site.get("startup") or {}
    plan.startup_flash_ms = ms(su.get("flash", 0.0))
    plan.startup_all_red_ms = ms(su.get("all_red", 0.0))
    return plan


def _place_group(start, length, ring_phases, y, mins, inter, timing, ped_phase):
    """PhaseTimings of one barrier group of `length` ms beginning at `start`."""
    out = {}
    for r in ring_phases:
        greens = _share(length - sum(inter[p] for p in r), r, y, mins)
        t = start
        for i, p in enumerate(r):
            pt = PhaseTiming()
            pt.phase, pt.start = p, t
            if i == len(r) - 1:   # the last phase takes the rounding remainder
                pt.green = start + length - t - inter[p]
            else:
                pt.green = max(mins[p], int(round(greens[p] / 100.0)) * 100)
            pt.yellow = round(timing[p]["yellow"] * 1000)
            pt.red_clear = round(timing[p]["red_clear"] * 1000)
            pt.walk = round(timing[p].get("walk", 0) * 1000) if ped_phase.get(p) else 0
            pt.ped_clear = round(timing[p].get("ped_clear", 0) * 1000) if ped_phase.get(p) else 0
            out[p] = pt
            t += pt.green + inter[p]
    return out


class FixedTimeOutputs:
    """What the baseline shows: vehicle and ped indications by phase, plus new events."""

    __slots__ = ("vehicle", "ped", "events")

    def __init__(self, vehicle, ped, events):
        self.vehicle, self.ped, self.events = vehicle, ped, events


class FixedTimeController:
    """Pretimed controller: start-up flash and all-red, then the plan's cycle, forever."""

    def __init__(self, plan):
        self.plan = plan
        self.t0 = None
        self.state = {}     # phase -> interval name shown at the previous step
        self.ped_state = {}
        self.events = []    # every (ms, code, phase) so far

    def intervals_at(self, now_ms):
        """{phase: 'green'|'yellow'|'red_clear'|'red'|'flash'|'startup'} and {phase: ped state}."""
        if self.t0 is None:
            self.t0 = now_ms
        plan = self.plan
        t = now_ms - self.t0
        veh, ped = {}, {}
        if t < plan.startup_flash_ms:
            return dict.fromkeys(plan.timings, "flash"), dict.fromkeys(plan.timings, "dont_walk")
        t -= plan.startup_flash_ms
        if t < plan.startup_all_red_ms:
            return dict.fromkeys(plan.timings, "startup"), dict.fromkeys(plan.timings, "dont_walk")
        c = (t - plan.startup_all_red_ms) % plan.cycle_ms
        for p, pt in plan.timings.items():
            d = c - pt.start
            if 0 <= d < pt.green:
                veh[p] = "green"
            elif pt.green <= d < pt.green + pt.yellow:
                veh[p] = "yellow"
            elif pt.green + pt.yellow <= d < pt.green + pt.yellow + pt.red_clear:
                veh[p] = "red_clear"
            else:
                veh[p] = "red"
            if pt.walk and 0 <= d < pt.walk:
                ped[p] = "walk"
            elif pt.walk and pt.walk <= d < pt.walk + pt.ped_clear:
                ped[p] = "ped_clear"
            else:
                ped[p] = "dont_walk"
        return veh, ped

    def step(self, now_ms):
        """Indications to show from now_ms on."""
        veh, ped = self.intervals_at(now_ms)
        vehicle = [DARK] * (MAX_PHASES + 1)
        peds = [PED_DARK] * (MAX_PHASES + 1)
        new = []
        for p, st in veh.items():
            vehicle[p] = {"green": GREEN, "yellow": YELLOW, "flash": FLASH_RED}.get(st, RED)
            old = self.state.get(p)
            if old != st:
                if st == "green":
                    new.append((now_ms, ev.PHASE_BEGIN_GREEN, p))
                elif st == "yellow":
                    new.append((now_ms, ev.PHASE_BEGIN_YELLOW, p))
                elif st == "red_clear":
                    new.append((now_ms, ev.PHASE_END_YELLOW, p))
                    new.append((now_ms, ev.PHASE_BEGIN_RED_CLEAR, p))
                elif st == "red" and old == "red_clear":
                    new.append((now_ms, ev.PHASE_END_RED_CLEAR, p))
            self.state[p] = st
        for p, st in ped.items():
            if not self.plan.timings[p].walk:
                continue
            peds[p] = {"walk": WALK, "ped_clear": PED_CLEAR}.get(st, DONT_WALK)
            old = self.ped_state.get(p)
            if old != st and old is not None:
                code = {"walk": ev.PED_BEGIN_WALK, "ped_clear": ev.PED_BEGIN_CLEAR}.get(
                    st, ev.PED_BEGIN_DONT_WALK)
                new.append((now_ms, code, p))
            self.ped_state[p] = st
        new.sort()
        self.events.extend(new)
        return FixedTimeOutputs(vehicle, peds, new)


def run_fixed_time_sim(scenario, duration_s=None, seed=None, step_ms=100, progress=None):
    """Run the simulator under the Webster fixed-time plan for duration_s; return its Measures."""
    from hil.loop import run_loop
    from hil.sim import IntersectionSim

    sc = load_scenario(scenario)
    duration_s = sc.duration_s if duration_s is None else duration_s
    ctl = FixedTimeController(fixed_time_plan(sc, duration_s))
    sim = IntersectionSim(sc, seed)
    run_loop(sim, lambda now, inputs: ctl.step(now).vehicle, duration_s, step_ms, progress)
    return sim.measures()
