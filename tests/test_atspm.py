"""ODOT's `atspm` package read over exports of rig runs, as a traffic engineer would.

Three runs of the real agent on the arterial scenario's simulator, each
exported with `tools.export` (CSV, local time with offset) and read back the
way `edge-agent report` reads it: free (actuated, with pedestrians), the same
site on a coordinated pattern, and a run with a chattering detector and then
a conflict-monitor fault. The assertions are the issue's: terminations equal
the project's own counts per phase, valid phase calls and waits are at least
95 % of those ATSPM sees, pedestrian actuations and walks land on the same
phases, a fault flash reads as flash, and every bin is in the site's zone.
"""

import copy

import pytest

atspm = pytest.importorskip("atspm")

from edge_agent.agent import Agent, Inputs
from edge_agent.indications import GREEN
from edge_agent.intersection import parse_site
from hil.loop import run_loop
from hil.scenario import load_scenario
from hil.sim import IntersectionSim
from tools.atspm_measures import run_atspm
from tools.export import rig_events, rig_start_ms, write_export
from tools.timeline import termination_summary
from tests.portable.test_monitor import BrokenAtStep

START = "2026-06-15 07:00"          # EDT, UTC-4, in the scenario site's zone
CHATTER_CH = 4                      # SB through/right stop bar, phase 4
CHATTER_FROM, CHATTER_TO = 600_000, 660_000
FLASH_AT = 1_500_000
OMIT_PHASE, OMIT_FROM, OMIT_TO = 3, 300_000, 420_000     # an outside omit request, 07:05-07:07


class AllGreenFrom(BrokenAtStep):
    """A controller whose outputs break at at_ms (every phase green): the
    conflict monitor must catch it in that step."""

    def vehicle_indications(self):
        v = self.real.vehicle_indications()
        if self.now >= self.at_ms:
            for p in self.real.site.phases:
                v[p] = GREEN
        return v


def coordinated(sc_site):
    """The arterial site on a 130 s pattern, 2 and 6 coordinated."""
    site = copy.deepcopy(sc_site)
    site["fallback_plan"]["coordination"] = {
        "pattern": 2, "cycle": 130.0, "offset": 0.0,
        "splits": {"1": 16.0, "2": 58.0, "3": 14.0, "4": 42.0,
                   "5": 16.0, "6": 58.0, "7": 14.0, "8": 42.0},
        "coordinated": [2, 6], "force_mode": "fixed", "max_mode": "inhibit",
        "correction": "shortway", "max_correction": 0.17}
    return site


def rig_run(tmp_path, name, duration_s, site_dict=None, chatter=False, flash_at=None,
            omit=False):
    """Run the agent on the arterial simulator, export it, run atspm over it.

    Returns (site, events as (mono ms, code, param), atspm tables, on-edges fed per channel)."""
    sc = load_scenario("arterial")
    site_dict = site_dict or sc.site
    site = parse_site(site_dict)
    agent = Agent(site, now=0)
    sim = IntersectionSim(sc, sc.seed)
    events = []
    fed = {}
    level = {}

    def decide(now, inputs):
        levels = dict(inputs.detectors or {})
        pulses = dict(inputs.pulses or {})
        if chatter and CHATTER_FROM <= now < CHATTER_TO:
            pulses[CHATTER_CH] = pulses.get(CHATTER_CH, 0) + 1
        for ch in set(levels) | set(pulses):
            raw = levels.get(ch, level.get(ch, False))
            n = pulses.get(ch, 0)
            fed[ch] = fed.get(ch, 0) + (n if n else int(raw and not level.get(ch, False)))
            level[ch] = raw
        if flash_at is not None and now == flash_at:
            agent.controller = AllGreenFrom(agent.controller, flash_at)
        mask = 1 << OMIT_PHASE if omit and OMIT_FROM <= now < OMIT_TO else 0
        out = agent.step(now, Inputs(detectors=levels, pulses=pulses, peds=inputs.peds,
                                     omit=mask))
        events.extend(out.events)
        return out.vehicle

    run_loop(sim, decide, duration_s)
    start = rig_start_ms(site, sc.start_tod_ms, START)
    ev_path, det_path = write_export(str(tmp_path / name), site, rig_events(events, start))
    return site, events, run_atspm(ev_path, det_path), fed, ev_path


@pytest.fixture(scope="module")
def free(tmp_path_factory):
    return rig_run(tmp_path_factory.mktemp("free"), "free", 3600)


@pytest.fixture(scope="module")
def coord(tmp_path_factory):
    sc = load_scenario("arterial")
    return rig_run(tmp_path_factory.mktemp("coord"), "coord", 1800, coordinated(sc.site))


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    sc = load_scenario("arterial")
    site = copy.deepcopy(sc.site)
    for d in site["detectors"]:
        if d["channel"] == CHATTER_CH:
            d["erratic"] = 120              # on-edges per minute; the injected chatter is 600
    return rig_run(tmp_path_factory.mktemp("faults"), "faults", 1800, site,
                   chatter=True, flash_at=FLASH_AT, omit=True)


def atspm_terminations(tables):
    t = tables["terminations"]
    out = {}
    for phase, measure, total in zip(t["Phase"], t["PerformanceMeasure"], t["Total"]):
        key = (int(phase), measure)
        out[key] = out.get(key, 0) + int(total)
    return out


def own_terminations(events, site):
    out = {}
    for p, _, _, gap, mx, force, _ in termination_summary(events, site):
        for measure, n in (("GapOut", gap), ("MaxOut", mx), ("ForceOff", force)):
            if n:
                out[(p, measure)] = n
    return out


def valid_share(tables, event_class):
    rows = tables["timeline"]
    rows = rows[rows["EventClass"] == event_class]
    return int(rows["IsValid"].sum()), len(rows)


@pytest.mark.parametrize("run,at_least", [("free", 150), ("coord", 80)])
def test_atspm_terminations_equal_the_projects_own_counts_per_phase(run, at_least, request):
    site, events, tables, _, _ = request.getfixturevalue(run)
    own = own_terminations(events, site)
    assert atspm_terminations(tables) == own
    assert sum(own.values()) > at_least


def test_coordinated_run_forces_off_the_side_phases_and_atspm_sees_the_pattern(coord):
    site, events, tables, _, _ = coord
    terms = atspm_terminations(tables)
    # Coordinated phases (max inhibited) end only at their yield point's force-off.
    for p in (2, 6):
        assert terms.get((p, "GapOut"), 0) == terms.get((p, "MaxOut"), 0) == 0
        assert terms[(p, "ForceOff")] >= 10
    assert sum(terms.get((p, "ForceOff"), 0) for p in (1, 3, 4, 5, 7, 8)) > 0
    tl = tables["timeline"]
    cycles = tl[tl["EventClass"] == "Cycle Length Change"]["EventValue"].tolist()
    assert cycles == [130]
    # The first cycles seek the offset: 150 with the enumeration's transition
    # states (2 add, 3 subtract), which atspm reads as a transition.
    states = [p for t, c, p in events if c == 150]
    assert states[0] in (2, 3) and states[-1] == 1
    assert tl["EventClass"].str.startswith("Transition").sum() == states.count(2) + states.count(3)


@pytest.mark.parametrize("run", ["free", "coord"])
def test_valid_phase_calls_and_waits_are_at_least_95_percent_of_what_atspm_sees(run, request):
    _, _, tables, _, _ = request.getfixturevalue(run)
    for event_class in ("Phase Call", "Phase Wait"):
        valid, seen = valid_share(tables, event_class)
        assert seen > 50, event_class
        assert valid >= 0.95 * seen, (event_class, valid, seen)


def test_ped_actuations_and_walks_land_on_the_same_phases(free):
    site, _, tables, _, _ = free
    ped = tables["ped"]
    actuated = set(int(p) for p, n in zip(ped["Phase"], ped["PedActuation"]) if n > 0)
    walked = set(int(p) for p, n in zip(ped["Phase"], ped["PedServices"]) if n > 0)
    ped_phases = set(p for p in site.phases if site.has_ped[p])
    assert actuated == walked == ped_phases == {2, 4, 6, 8}
    delay = tables["ped_delay"]
    assert set(int(p) for p in delay["Phase"]) == ped_phases
    # No wait longer than two of the free plan's longest cycles (about 150 s).
    assert float(delay["AvgPedDelay"].max()) < 150


def test_bins_and_timestamps_are_in_the_sites_zone(free):
    _, _, tables, _, ev_path = free
    with open(ev_path) as f:
        f.readline()
        first = f.readline().split(",")[0]
    assert first.startswith("2026-06-15 07:00:") and first.endswith("-04:00")
    bins = sorted(set(str(t) for t in tables["terminations"]["TimeStamp"]))
    assert bins == ["2026-06-15 07:00:00", "2026-06-15 07:15:00",
                    "2026-06-15 07:30:00", "2026-06-15 07:45:00"]


def test_detector_events_in_fault_keep_atspm_actuations_whole(faults):
    _, events, tables, fed, _ = faults
    tl = tables["timeline"]
    erratic = tl[(tl["EventClass"] == "Erratic") & (tl["Parameter"] == CHATTER_CH)] \
        if "Parameter" in tl else tl[tl["EventClass"] == "Erratic"]
    assert len(erratic) >= 1
    act = tables["actuations"]
    for ch in (2, CHATTER_CH, 12):
        got = int(act[act["Detector"] == ch]["Total"].sum())
        logged_before_flash = sum(1 for t, c, p in events if c == 82 and p == ch)
        assert got == logged_before_flash
    # Every on-edge fed before the flash is in the log, chatter included.
    ons = sum(1 for t, c, p in events if c == 82 and p == CHATTER_CH)
    assert ons == fed[CHATTER_CH]


def test_a_monitor_fault_flash_reads_as_flash(faults):
    _, events, tables, _, _ = faults
    tl = tables["timeline"]
    flash = tl[tl["EventClass"] == "Flash - MMU"]
    assert len(flash) == 1
    assert str(flash["StartTime"].iloc[0]) == "2026-06-15 07:25:00"
    assert tl[tl["EventClass"] == "Flash - Not Flash"].empty


def test_phase_check_and_omit_events_reach_atspm(faults):
    """Codes the phase machine logs (2 phase check, 46/47 omit on/off) are in the export
    as logged, and atspm's timeline shows the omit at its local times."""
    _, events, tables, _, _ = faults
    raw = tables["raw_data"]
    checks = sum(1 for t, c, p in events if c == 2)
    assert checks > 0
    assert int((raw["EventId"] == 2).sum()) == checks
    assert [(t, c, p) for t, c, p in events if c in (46, 47)] == [
        (OMIT_FROM, 46, OMIT_PHASE), (OMIT_TO, 47, OMIT_PHASE)]
    tl = tables["timeline"]
    omit = tl[tl["EventClass"] == "Phase Omit"]
    assert [(str(a), str(b), int(p)) for a, b, p in
            zip(omit["StartTime"], omit["EndTime"], omit["EventValue"])] == [
        ("2026-06-15 07:05:00", "2026-06-15 07:07:00", OMIT_PHASE)]


def test_phase_skips_reach_atspm_as_logged(coord):
    """Phase skipped (14): the sequencer's skips are in the export one for one."""
    _, events, tables, _, _ = coord
    skips = [p for t, c, p in events if c == 14]
    raw = tables["raw_data"]
    assert len(skips) > 0
    assert sorted(int(p) for p in raw[raw["EventId"] == 14]["Parameter"]) == sorted(skips)


def test_start_up_flash_reads_as_start_up_flash(tmp_path):
    """The boot events reach the export: unit flash status 7 (startup) at power-up and
    2 (not flash) when the 6 s start-up flash ends; atspm draws the start-up flash."""
    sc = load_scenario("arterial")
    site = copy.deepcopy(sc.site)
    site["startup"]["flash"] = 6.0
    _, events, tables, _, _ = rig_run(tmp_path, "boot", 120, site)
    assert [(t, p) for t, c, p in events if c == 173] == [(0, 7), (6000, 2)]
    tl = tables["timeline"]
    flash = tl[tl["EventClass"].str.startswith("Flash")]
    # The return to "not flash" is a state of its own for atspm; with no 173 after it,
    # its end is its start plus atspm's cushion time (1 s here; timeline.sql: COALESCE).
    assert [(c, str(a), str(b)) for c, a, b in
            zip(flash["EventClass"], flash["StartTime"], flash["EndTime"])] == [
        ("Flash - Startup", "2026-06-15 07:00:00", "2026-06-15 07:00:06"),
        ("Flash - Not Flash", "2026-06-15 07:00:06", "2026-06-15 07:00:07")]


def test_report_draws_every_chart_from_atspm_into_one_self_contained_page(faults, tmp_path):
    import re
    from tools.cli import main
    site, events, tables, _, ev_path = faults
    det_path = ev_path.replace("events.csv", "detectors.csv")
    out = tmp_path / "report.html"
    assert main(["report", ev_path, det_path, "-o", str(out), "--png-dir", str(tmp_path)]) == 0
    page = out.read_text()
    heads = re.findall(r"<h2>([^<]*)</h2>", page)
    assert heads[:3] == ["Per phase, whole period", "Flash", "Purdue phase termination"]
    for chart in ("Split monitor", "Purdue coordination diagram, phase 2", "Arrivals on green",
                  "Split failures", "Yellow and red actuations", "Pedestrian delay",
                  "Approach volume and delay"):
        assert chart in heads
    # Inline images only: the page is one file.
    assert page.count('src="data:image/png;base64,') == len(heads) - 2
    assert "src=\"http" not in page and "<link" not in page
    assert len(list(tmp_path.glob("*.png"))) == len(heads) - 2
    # The table is atspm's numbers: phase 4's gap-outs as its terminations table says.
    term = tables["terminations"]
    gap4 = int(term[(term["Phase"] == 4) & (term["PerformanceMeasure"] == "GapOut")]["Total"].sum())
    row4 = re.search(r"<tr><td>4</td>(.*?)</tr>", page).group(1)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row4)
    assert cells[1] == str(gap4)
    assert "<th>mean green (s)</th>" in page and "<th>arrivals on green (%)</th>" in page
    assert "<td>2026-06-15 07:25:00</td>" in page and "Flash - MMU" in page
