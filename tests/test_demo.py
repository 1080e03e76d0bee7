"""`edge-agent demo`, `hil run`, `hil sumo` and `bench sim` end to end, and their pieces."""

import io
import re

import pytest

from edge_agent import events as ev
from edge_agent.agent import Agent
from edge_agent.indications import GREEN, RED
from edge_agent.intersection import parse_site
from hil.rig import run_actuated, run_fixed_time
from hil.scenario import load_scenario
from tools import report
from tools.cli import main
from tools.cmd_demo import FrontPanel, ProgressBar, clock

PNG = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def test_demo_writes_a_report_with_three_figures_and_the_run_s_figures(tmp_path, capsys):
    out = tmp_path / "demo.html"
    assert main(["demo", "--duration", "600", "--seed", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    agent = run_actuated("arterial", duration_s=600, seed=3)
    fixed = run_fixed_time("arterial", duration_s=600, seed=3)
    a, f = agent.measures.total, fixed.measures.total
    page = out.read_text()
    pngs = PNG.findall(page)
    # The demo's three figures, then the `edge-agent report` charts (atspm) of the
    # agent's run: terminations, split monitor, a PCD per advance-detected
    # phase (2, 4, 6, 8), AOG, split failures, yellow/red, ped delay, phase
    # wait, approach volume and delay.
    assert len(pngs) == 3 + 12
    assert "Purdue phase termination (agent, atspm)" in page
    # Tables with units, not text dumps.
    assert "<pre>" not in page
    assert "<th>mean delay (s/veh)</th>" in page and "<th>green (s)</th>" in page
    assert all(p.startswith("iVBORw0KGgo") for p in pngs)         # PNG signature
    for figure in ("%.1f s/veh" % a.mean_delay_s, "%.1f s/veh" % f.mean_delay_s,
                   "%.1f %%" % (100 * a.stop_rate), "%d veh" % a.p95_queue,
                   "%d of %d" % (a.departures, a.arrivals)):
        assert figure in text
        assert figure in page
    assert "First 3 cycles" in text and "ended by gap-out" in text
    assert "phase  name          greens  gap-out  max-out  force-off" in text
    assert "report: %s" % out in text


def test_demo_without_report_and_with_an_unknown_scenario(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--scenario", "night", "--duration", "300", "--no-report"]) == 0
    assert not (tmp_path / "reports").exists()
    assert "mean control delay" in capsys.readouterr().out
    assert main(["demo", "--scenario", "no-such-place", "--no-report"]) == 2
    assert "no-such-place" in capsys.readouterr().err


def test_realtime_demo_draws_the_front_panel_line(capsys):
    assert main(["demo", "--realtime", "--speed", "100", "--duration", "30", "--no-report"]) == 0
    text = capsys.readouterr().out
    assert "\r07:00:00.0 st-all-red 1R  2RD" in text
    assert re.search(r"\r07:00:\d\d\.\d run   1R  2GD 3R  4RD 5R  6GD 7R  8RD \| \u00d82 G +\d+\.\d .*gap", text)


def test_front_panel_shows_the_controller_timers():
    sc = load_scenario("arterial")
    site = parse_site(sc.site)
    agent = Agent(site)
    out = None
    for now in range(0, 6_100, 100):
        out = agent.step(now)
    panel = FrontPanel(site, sc.start_tod_ms, stream=io.StringIO())
    # All-red start-up ends at 4.0 s; phases 2 and 6 (min recall) then time min green 15 s.
    assert panel.line(6_000, out, agent) == (
        "07:00:06.0 run   1R  2GD 3R  4RD 5R  6GD 7R  8RD | "
        "\u00d82 G   2.0 min 13.0 gap 0.0 max  -   | \u00d86 G   2.0 min 13.0 gap 0.0 max  -   | calls -")


def test_progress_bar_writes_only_the_finished_bar_off_a_terminal():
    s = io.StringIO()
    bar = ProgressBar("agent", 7 * 3_600_000, stream=s)
    bar(60_000, 600_000)
    assert s.getvalue() == ""
    bar.done()
    assert re.fullmatch(r"\r  agent +\[#{30}\] 100 %  07:10:00 simulated +\d+\.\d s\n", s.getvalue())
    assert clock(7 * 3_600_000 + 61_250, tenths=True) == "07:01:01.2"


def test_comparison_rows_carry_the_measures():
    agent = run_actuated("suburban", duration_s=600, seed=1).measures
    fixed = run_fixed_time("suburban", duration_s=600, seed=1).measures
    rows = {r[0]: r[1:] for r in report.comparison_rows(agent, fixed)}
    assert rows["mean control delay"][:2] == ("%.1f s/veh" % agent.total.mean_delay_s,
                                             "%.1f s/veh" % fixed.total.mean_delay_s)
    assert rows["split failures"][0] == str(sum(p.split_failures for p in agent.phases.values()))
    assert rows["max queue"][1] == "%d veh" % fixed.total.max_queue
    lines = report.comparison_lines(report.comparison_rows(agent, fixed))
    assert lines[0].split()[:3] == ["measure", "actuated", "agent"]
    assert len({len(x) for x in lines}) == 1          # aligned


def test_phase_intervals_follow_green_yellow_red_clearance():
    log = [(1000, ev.PHASE_BEGIN_GREEN, 2), (1000, ev.PED_BEGIN_WALK, 2),
           (8000, ev.PED_BEGIN_CLEAR, 2), (20000, ev.PED_BEGIN_DONT_WALK, 2),
           (25000, ev.PHASE_BEGIN_YELLOW, 2), (28300, ev.PHASE_END_YELLOW, 2),
           (28300, ev.PHASE_BEGIN_RED_CLEAR, 2), (29700, ev.PHASE_END_RED_CLEAR, 2),
           (29700, ev.PHASE_BEGIN_GREEN, 4)]
    assert report.phase_intervals(log, 40_000) == {
        2: [(1000, 8000, "walk"), (8000, 20000, "ped_clear"), (1000, 25000, "green"),
            (25000, 28300, "yellow"), (28300, 29700, "red_clear")],
        4: [(29700, 40000, "green")]}


def test_first_cycles_end_at_the_barrier_before_the_reference_green():
    log = [(0, ev.PHASE_BEGIN_GREEN, 2), (50, ev.BARRIER_TERMINATION, 1),
           (80, ev.BARRIER_TERMINATION, 2), (90, ev.PHASE_BEGIN_GREEN, 2),
           (150, ev.BARRIER_TERMINATION, 1), (200, ev.BARRIER_TERMINATION, 2),
           (230, ev.PHASE_BEGIN_GREEN, 2)]
    assert report.first_cycles_end_ms(log, 2, cycles=2) == 200
    assert report.first_cycles_end_ms(log, 2, cycles=3) is None


def test_hil_run_prints_agent_against_fixed_time(capsys, tmp_path):
    path = tmp_path / "m.json"
    assert main(["hil", "run", "suburban", "--duration", "300", "--movements",
                 "--json", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Webster fixed time" in text and "Measures per movement" in text
    import json
    doc = json.loads(path.read_text())
    assert doc["scenario"] == "suburban" and doc["duration_s"] == 300
    assert "%.1f s/veh" % doc["agent"]["total"]["mean_delay_s"] in text


def test_bench_sim_reports_the_real_time_factor(capsys):
    assert main(["bench", "sim", "--hours", "0.05"]) == 0
    text = capsys.readouterr().out
    m = re.search(r"agent in the loop +\d+\.\d+ s wall += +(\d+)x real time", text)
    assert m and int(m.group(1)) > 100


@pytest.mark.sumo
def test_hil_sumo_prints_the_three_controllers(capsys):
    pytest.importorskip("libsumo")
    from hil.sumo import build
    if not build.sumo_available():
        pytest.skip("SUMO not installed")
    assert main(["hil", "sumo", "--duration", "120", "--seed", "2"]) == 0
    text = capsys.readouterr().out
    for name in ("edge-agent", "sumo-actuated", "sumo-static"):
        assert re.search(r"\n  %s +\d+ +\d+ +\d+\.\d\d s" % name, text), name
    assert "edge-agent against SUMO actuated" in text


def test_report_html_escapes_and_embeds():
    page = report.render_html("a <b>", ["x & y"], [("m", "1", "2", "-")],
                              [(2, "EB", 1, 1, 0, 0, 3.0)], [(b"\x89PNG", "fig", "cap")])
    assert "a &lt;b&gt;" in page and "x &amp; y" in page
    assert len(PNG.findall(page)) == 1


def test_demo_run_is_safe_red_before_the_first_green():
    r = run_actuated("arterial", duration_s=10)
    first = [t for t, ind in r.sim.collector.timeline[2] if ind == GREEN][0]
    assert first == 4000
    assert r.sim.collector.timeline[2][0] == (0, RED)


def test_the_demo_says_plainly_when_the_baseline_starves_a_movement():
    from tools.cmd_demo import phase_of
    sc = load_scenario("arterial")
    agent = run_actuated(sc, duration_s=1800, seed=1)
    fixed = run_fixed_time(sc, duration_s=1800, seed=1)
    starved = report.starved_phases(fixed.measures)
    assert starved == [3, 7]
    for p in starved:
        ph = fixed.measures.phases[p]
        assert ph.split_failures >= ph.greens / 2
    text = report.baseline_caveat(agent.measures, fixed.measures, phase_of(sc))
    assert text.startswith("The Webster baseline does not serve phases 3, 7: split failures in ")
    rest = [k for k in fixed.measures.movements if k not in ("NB_L", "SB_L")]
    a = sum(agent.measures.movements[k].delay_s for k in rest) / \
        sum(agent.measures.movements[k].departures for k in rest)
    assert ("Without NB_L and SB_L: agent %.1f s/veh" % a) in text
    assert report.baseline_caveat(agent.measures, agent.measures, phase_of(sc)) is None
