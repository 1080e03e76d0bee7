"""Detector reports and diagnostics, read like a timing sheet.

Site (sheets.two_phase_site): one ring, phases 2 and 4, detector channel =
phase number, start-up all-red 2.0 s, phase 2 green at 2,000 ms. Phase 2:
min 10 s, passage 3 s, max 40 s, yellow 4 s, red clearance 1.5 s. Steps of
100 ms. Reports are fed at the first step at or after their arrival time.
The agent runs its detectors once the start-up all-red is over, so every
sheet starts its evidence at or after 2,000 ms.
"""

try:
    from tests.portable.sheets import two_phase_site, phase_timing, first, times, scripted
except ImportError:
    from sheets import two_phase_site, phase_timing, first, times, scripted
from edge_agent import events as ev
from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site
from edge_agent.detectors import Report, PRESENCE, COUNTS, STATUS, HEARTBEAT, STALE
from edge_agent.diagnostics import (DEV_OPEN, DEV_SHORTED, DEV_WATCHDOG,
                                    PED_DETECTOR_FAILED, PED_DETECTOR_RESTORED)


def site_with(ch2=None, ch4=None, t2=None, t4=None, ped=None):
    """The two-phase sheet site with options on detectors 2 and 4 (and the ped button)."""
    site = two_phase_site(t2=t2, t4=t4, ped2=ped is not None)
    site["detectors"][0].update(ch2 or {})
    site["detectors"][1].update(ch4 or {})
    if ped is not None:
        site["ped_detectors"][0].update(ped)
        site["fallback_plan"]["phases"][0]["walk"] = 7.0
        site["fallback_plan"]["phases"][0]["ped_clear"] = 10.0
    return site


def drive(site, until_ms, reports=(), presence=None, pulses=None, peds=None, step_ms=100,
          probe=None):
    """Step an agent to until_ms; returns (agent, events).

    reports: Report objects, each fed at the first step >= its rx_ms
    presence: {channel: [(on, off)]} and pulses: {channel: [ms]} on the direct path
    probe(now, agent): called after every step
    """
    agent = Agent(parse_site(site))
    # Ordered by arrival, ties kept in the given order (MicroPython's sort is not stable).
    pending = [r for _, _, r in sorted([(r.rx_ms, k, r) for k, r in enumerate(reports)],
                                       key=lambda x: (x[0], x[1]))]
    i = 0
    log = []
    presence = presence or {}
    pulses = pulses or {}
    peds = peds or {}
    t = 0
    while t <= until_ms:
        batch = []
        while i < len(pending) and pending[i].rx_ms <= t:
            batch.append(pending[i])
            i += 1
        lv, pl, pd = scripted(t, step_ms, presence, pulses, peds)
        out = agent.step(t, Inputs(detectors=lv or None, pulses=pl or None, peds=pd or None,
                                   reports=batch or None))
        log.extend(out.events)
        if probe is not None:
            probe(t, agent)
        t += step_ms
    return agent, log


def heartbeats(channels, start, stop, every, source="card", ped=False):
    return [Report(source, HEARTBEAT, t, t, ped=ped, channels=channels)
            for t in range(start, stop, every)]


def status_of(agent, ch, ped=False):
    for st in agent.detectors.status(agent.last_ms):
        if st["channel"] == ch and st["ped"] == ped:
            return st
    return None


# -- the report watchdog -----------------------------------------------------

def test_silent_source_faults_at_its_watchdog_limit_and_restores_after_restore_time():
    site = site_with(ch2={"watchdog": 2.0, "restore": 3.0})
    reps = heartbeats([2], 500, 5_001, 500) + heartbeats([2], 10_000, 20_000, 500)
    agent, log = drive(site, 20_000, reps)
    assert times(log, ev.DETECTOR_FAULT_WATCHDOG, 2) == [7_000]     # 5.0 s + 2.0 s
    assert times(log, ev.DETECTOR_RESTORED, 2) == [13_000]          # reports again at 10 s + 3 s
    assert status_of(agent, 2)["state"] == "ok"


def test_stale_detector_places_max_recall_on_its_phase():
    site = site_with(ch2={"watchdog": 2.0, "fail_recall": "max"})
    masks = {}

    def probe(now, agent):
        masks[now] = agent.detectors.fail_max

    reps = heartbeats([2], 2_000, 3_001, 500)
    agent, log = drive(site, 60_000, reps, pulses={4: [3_000]}, probe=probe)
    assert masks[4_900] == 0 and masks[5_000] == 1 << 2
    # Max recall from 5.0 s: phase 2 extends to max 40 s from the conflicting call at 3.0 s.
    assert first(log, ev.PHASE_MAX_OUT, 2) == 43_000
    assert first(log, ev.PHASE_GAP_OUT, 2) is None
    st = status_of(agent, 2)
    assert st["state"] == "fault" and st["faults"] == [85] and st["alarms"] == 0x08


def test_min_fail_recall_calls_the_phase_without_extending_it():
    site = site_with(ch4={"watchdog": 1.0, "fail_recall": "min"})
    reps = heartbeats([4], 2_000, 2_501, 500)
    _, log = drive(site, 40_000, reps, pulses={2: [20_000]})
    assert times(log, ev.DETECTOR_FAULT_WATCHDOG, 4) == [3_500]
    # Phase 4 is called by the fail recall: 2 gaps out at its min green, 4 is served
    # and, with a call back on 2, gaps out at its own min green (no extension).
    assert first(log, ev.PHASE_GAP_OUT, 2) == 12_000
    assert first(log, ev.PHASE_BEGIN_GREEN, 4) == 17_500
    assert first(log, ev.PHASE_GAP_OUT, 4) == 27_500


def test_stale_report_from_the_driver_starts_the_watchdog_from_the_last_good_report():
    site = site_with(ch2={"watchdog": 2.0})
    reps = heartbeats([2], 2_000, 3_001, 500) + [Report("card", STALE, 3_200, None, channels=[2])]
    agent, log = drive(site, 6_000, reps)
    assert times(log, ev.DETECTOR_FAULT_WATCHDOG, 2) == [5_000]


def test_directly_wired_channels_never_go_stale():
    site = site_with(ch2={"watchdog": 0.5}, ch4={"watchdog": 0.5})
    _, log = drive(site, 30_000, pulses={4: [3_000]}, presence={2: [(5_000, 5_400)]})
    assert times(log, ev.DETECTOR_FAULT_WATCHDOG, 2) == []
    assert times(log, ev.DETECTOR_FAULT_WATCHDOG, 4) == []


# -- NTCIP diagnostics: max presence, no activity, erratic counts -------------

def test_stuck_on_detector_faults_at_max_presence_and_restores_once_it_clears():
    site = site_with(ch2={"max_presence": 0.5, "restore": 10.0})    # 30 s
    _, log = drive(site, 60_000, presence={2: [(3_000, 40_000)]}, pulses={4: [3_000]})
    assert times(log, ev.DETECTOR_FAULT_OTHER, 2) == [33_000]
    assert times(log, ev.DETECTOR_RESTORED, 2) == [50_000]          # off at 40 s + 10 s
    # A detector in fault still logs its edges (ATSPM counts actuations from
    # them): its 40 s "off" is in the log.
    assert times(log, ev.DETECTOR_OFF, 2) == [40_000]


def test_no_activity_faults_after_its_minutes_and_an_actuation_starts_the_restore_time():
    site = site_with(ch2={"no_activity": 1.0, "restore": 5.0})
    _, log = drive(site, 90_000, pulses={2: [5_000, 80_000]})
    assert times(log, ev.DETECTOR_FAULT_OTHER, 2) == [65_000]
    assert times(log, ev.DETECTOR_RESTORED, 2) == [85_000]


def test_chattering_detector_faults_on_the_count_above_erratic_counts_per_minute():
    # 20 counts per minute allowed; an on-edge every 200 ms from 10.0 s to 19.8 s.
    site = site_with(ch2={"erratic": 20, "restore": 10.0})
    chatter = list(range(10_000, 20_000, 200))
    _, log = drive(site, 90_000, pulses={2: chatter})
    assert times(log, ev.DETECTOR_FAULT_CHATTER, 2) == [14_000]     # the 21st count
    # Clear once the last 21 counts span more than a minute: 15.8 s + 60 s; + 10 s restore.
    assert times(log, ev.DETECTOR_RESTORED, 2) == [85_800]


# -- device faults and plausibility -------------------------------------------

def test_open_and_shorted_loop_from_the_card_log_86_and_87():
    site = site_with(ch2={"restore": 10.0}, ch4={"restore": 10.0})
    reps = [Report("card", STATUS, 5_000, 5_000, faults={2: DEV_OPEN, 4: 0}),
            Report("card", STATUS, 6_000, 6_000, faults={2: DEV_OPEN, 4: DEV_SHORTED}),
            Report("card", STATUS, 8_000, 8_000, faults={2: 0, 4: DEV_SHORTED}),
            Report("card", STATUS, 9_000, 9_000, faults={2: 0, 4: 0})]
    reps += heartbeats([2, 4], 9_500, 30_000, 500)
    agent, log = drive(site, 30_000, reps)
    assert times(log, ev.DETECTOR_FAULT_OPEN, 2) == [5_000]
    assert times(log, ev.DETECTOR_FAULT_SHORTED, 4) == [6_000]
    assert times(log, ev.DETECTOR_RESTORED, 2) == [18_000]
    assert times(log, ev.DETECTOR_RESTORED, 4) == [19_000]


def test_card_watchdog_bit_logs_85_and_reports_the_ntcip_alarm_bits():
    site = site_with()
    reps = [Report("card", STATUS, 5_000, 5_000, faults={2: DEV_WATCHDOG})]
    reps += heartbeats([2], 5_000, 8_000, 500)
    agent, log = drive(site, 6_000, reps)
    assert times(log, ev.DETECTOR_FAULT_WATCHDOG, 2) == [5_000]
    st = status_of(agent, 2)
    assert st["reported_alarms"] == 0x02 and st["faults"] == [85]


def test_counts_above_the_physical_maximum_of_the_lane_log_excessive_change():
    # One lane, at most 3600 veh/h: a 10 s interval holds at most 10 + 1 vehicles.
    site = site_with(ch2={"lanes": 1, "max_flow": 3600})
    reps = [Report("card", COUNTS, 5_000, 5_000, counts={2: (11, 300)}, interval_ms=10_000),
            Report("card", COUNTS, 15_000, 15_000, counts={2: (12, 300)}, interval_ms=10_000)]
    _, log = drive(site, 16_000, reps)
    assert times(log, ev.DETECTOR_FAULT_CHATTER, 2) == [15_000]


def test_occupancy_above_100_percent_is_implausible():
    site = site_with()
    reps = [Report("card", COUNTS, 5_000, 5_000, counts={2: (3, 1001)}, interval_ms=10_000)]
    _, log = drive(site, 6_000, reps)
    assert times(log, ev.DETECTOR_FAULT_OTHER, 2) == [5_000]


def test_counts_contradicting_presence_three_intervals_running_are_implausible():
    # The presence picture shows no vehicle at all, the counts say 4 every interval.
    site = site_with(ch2={"watchdog": 0.0})
    reps = []
    for k in range(4):
        t = 2_000 + 1_000 * k
        reps.append(Report("card", PRESENCE, t, t, presence={2: False}))
        reps.append(Report("card", COUNTS, t, t, counts={2: (4, 120)}, interval_ms=1_000))
    _, log = drive(site, 6_000, reps)
    assert times(log, ev.DETECTOR_FAULT_OTHER, 2) == [4_000]


def test_counts_per_minute_above_erratic_counts_log_chatter():
    site = site_with(ch2={"erratic": 30})
    reps = [Report("ntcip", COUNTS, 4_000, None, counts={2: (6, 200)}, interval_ms=10_000),
            Report("ntcip", COUNTS, 5_000, None, counts={2: (5, 200)}, interval_ms=10_000)]
    _, log = drive(site, 6_000, reps)
    assert times(log, ev.DETECTOR_FAULT_CHATTER, 2) == [4_000]      # 36 per minute > 30


# -- pedestrian detectors ------------------------------------------------------

def test_stuck_ped_button_logs_91_places_a_ped_recall_and_92_on_restore():
    site = site_with(ped={"max_presence": 0.25, "restore": 5.0},
                     t4=phase_timing(4, recall="min"))
    presses = list(range(3_000, 40_000, 100))        # held down 3.0 .. 39.9 s
    _, log = drive(site, 120_000, peds={1: presses})
    assert times(log, PED_DETECTOR_FAILED, 1) == [18_000]          # 15 s after 3.0 s
    assert times(log, PED_DETECTOR_RESTORED, 1) == [45_000]        # released at 40 s + 5 s
    # Ped recall while failed: phase 2's walks keep coming without presses.
    walks = times(log, ev.PED_BEGIN_WALK, 2)
    assert len([t for t in walks if 18_000 <= t <= 45_000]) >= 1


# -- reports: edges, clock mapping, duplicates ----------------------------------

def test_short_actuation_between_two_1_hz_reports_still_places_a_call():
    # Card clock runs 100,000 ms ahead; arrival 30 ms after the card's stamp.
    site = site_with()
    C = 100_000
    reps = []
    for k in range(1, 31):
        s = 1_000 * k
        edges = []
        if s == 13_000:
            edges = [(12_300 + C, 2, True), (12_600 + C, 2, False)]
        reps.append(Report("card", PRESENCE, s + 30, s + C, presence={2: False}, edges=edges))
    _, log = drive(site, 30_000, reps, pulses={4: [3_000]})
    # Phase 2 gapped out at its min green (12.0 s); the 0.3 s vehicle at 12.3 s,
    # learned at 13,030, is not lost: it places the call back on phase 2.
    assert first(log, ev.PHASE_GAP_OUT, 2) == 12_000
    assert times(log, ev.DETECTOR_ON, 2) == [13_100]
    assert times(log, ev.PHASE_CALL_REGISTERED, 2) == [13_100]


def test_late_learned_actuation_during_green_extends_from_its_arrival():
    site = site_with()
    reps = []
    for k in range(1, 31):
        s = 1_000 * k
        edges = []
        if s == 11_000:
            edges = [(10_300, 2, True), (10_600, 2, False)]
        reps.append(Report("card", PRESENCE, s + 20, s, presence={2: False}, edges=edges))
    _, log = drive(site, 30_000, reps, pulses={4: [3_000]})
    # Truth: off at 10.6 s + 3 s passage = 13.6 s; learned at 11,020, so the
    # step at 11,100 extends: gap-out at 14,100, half a report period late.
    assert first(log, ev.PHASE_GAP_OUT, 2) == 14_100


def test_delay_timer_counts_from_the_mapped_source_time_of_the_on_edge():
    # Delay 2.0 s; vehicle on at card time 4,300 (local 4,350), learned at 5,050.
    site = site_with(ch4={"delay": 2.0})
    reps = []
    for k in range(1, 12):
        s = 1_000 * k
        edges = [(4_300, 4, True)] if s == 5_000 else []
        reps.append(Report("card", PRESENCE, s + 50, s, presence={4: s >= 5_000}, edges=edges))
    _, log = drive(site, 11_000, reps)
    assert first(log, ev.PHASE_CALL_REGISTERED, 4) == 6_400      # 4,350 + 2,000 -> step 6,400


def test_repeated_edges_in_later_reports_are_applied_once():
    site = site_with(ch2={"erratic": 2})
    reps = []
    hist = [(1_500, 2, True), (1_700, 2, False)]
    for k in range(1, 6):
        s = 1_000 * k
        reps.append(Report("card", PRESENCE, s, s, presence={2: False},
                           edges=[e for e in hist if s - 2_000 < e[0] <= s]))
    _, log = drive(site, 5_000, reps)
    assert times(log, ev.DETECTOR_ON, 2) == [2_000]
    assert times(log, ev.DETECTOR_FAULT_CHATTER, 2) == []


def test_presence_bitmap_catches_an_edge_the_source_did_not_list():
    site = site_with(ch4={"delay": 0.0})
    reps = [Report("card", PRESENCE, 3_000, 3_000, presence={4: True})]
    _, log = drive(site, 4_000, reps)
    assert times(log, ev.DETECTOR_ON, 4) == [3_000]
    assert times(log, ev.PHASE_CALL_REGISTERED, 4) == [3_000]


def test_a_restarted_source_clock_is_followed():
    site = site_with()
    reps = [Report("card", PRESENCE, 1_000, 50_000, presence={2: False}),
            Report("card", PRESENCE, 2_000, 51_000, presence={2: False}),
            # The card rebooted: its clock starts again near zero.
            Report("card", PRESENCE, 3_000, 200, presence={2: False},
                   edges=[(100, 2, True), (150, 2, False)])]
    agent, log = drive(site, 3_000, reps)
    assert times(log, ev.DETECTOR_ON, 2) == [3_000]
    assert agent.detectors.clocks["card"].restarts == 1


def test_reports_for_unknown_channels_are_counted_not_applied():
    site = site_with()
    reps = [Report("card", PRESENCE, 2_000, 2_000, presence={9: True, 2: False})]
    agent, log = drive(site, 2_000, reps)
    assert agent.detectors.unknown_channels == 1


def test_status_lists_every_detector_with_its_state_and_report_age():
    site = site_with(ch2={"watchdog": 2.0})
    reps = heartbeats([2], 2_000, 3_001, 500)
    agent, _ = drive(site, 4_000, reps)
    st = status_of(agent, 2)
    assert st["state"] == "ok" and st["age_ms"] == 1_000 and st["source"] == "reports"
    assert status_of(agent, 4)["source"] == "direct"
    assert status_of(agent, 4)["age_ms"] is None


def test_alarms_still_flowing_do_not_hide_silent_presence():
    site = site_with(ch2={"watchdog": 2.0})
    reps = [Report("unit", PRESENCE, t, t, presence={2: False}) for t in range(2_000, 3_001, 500)]
    reps += [Report("unit", STATUS, t, t, faults={2: 0}) for t in range(2_000, 8_001, 500)]
    _, log = drive(site, 8_000, reps)
    assert times(log, ev.DETECTOR_FAULT_WATCHDOG, 2) == [5_000]


def edges(log, channel):
    """(ms, 'on'/'off') of one vehicle channel's detector events, in time order."""
    out = [(t, "on" if c == ev.DETECTOR_ON else "off") for t, c, p in log
           if c in (ev.DETECTOR_ON, ev.DETECTOR_OFF) and p == channel]
    return sorted(out)


def test_a_pulse_between_steps_logs_on_then_off_at_their_own_milliseconds():
    _, log = drive(site_with(), 6_000, pulses={4: [3_050]})
    assert edges(log, 4) == [(3_099, "on"), (3_100, "off")]


def test_a_pulse_on_an_occupied_zone_is_the_vehicle_leaving_and_the_next_arriving():
    # Zone 4 occupied 3.0-5.0 s; a pulse at 4.0 s: off, on (never on, on, off, off).
    _, log = drive(site_with(), 8_000, presence={4: [(3_000, 5_000)]}, pulses={4: [4_000]})
    assert edges(log, 4) == [(3_000, "on"), (3_999, "off"), (4_000, "on"), (5_000, "off")]


def test_pedestrian_detector_events_carry_the_phase_not_the_button_channel():
    site = site_with(ped={"channel": 7})
    _, log = drive(site, 6_000, peds={7: [3_000]})
    assert times(log, ev.PED_DETECTOR_ON, 2) == [3_000]
    assert times(log, ev.PED_DETECTOR_OFF, 2) == [3_100]
    assert times(log, ev.PED_DETECTOR_ON, 7) == []
