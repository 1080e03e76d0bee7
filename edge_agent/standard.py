"""A standard 8-phase dual-ring intersection, built in for demos, tests and benches.

Ring 1: 1 2 | 3 4, ring 2: 5 6 | 7 8, barriers between 1-2/5-6 and 3-4/7-8.
Phases 2 and 6 are the main-street throughs (min recall), 4 and 8 the side
street; the odd phases are protected lefts. Two detectors per phase: a
stop-bar presence zone (non-locking) and an advance detector (locking).
"""

NAMES = {1: "WB left", 2: "EB through", 3: "NB left", 4: "SB through",
         5: "EB left", 6: "WB through", 7: "SB left", 8: "NB through"}


def standard_plan(plan_id="free"):
    """The built-in fully actuated free plan as a plain dict."""
    phases = []
    for p in range(1, 9):
        through = p % 2 == 0
        phases.append({
            "phase": p,
            "min_green": 10.0 if through else 5.0,
            "passage": 3.0 if through else 2.0,
            "max_green": 40.0 if through else 20.0,
            "max2": 50.0 if through else 25.0,
            "yellow": 4.0 if through else 3.5,
            "red_clear": 1.5,
            "walk": 7.0 if through else 0.0,
            "ped_clear": 14.0 if through else 0.0,
            "recall": "min" if p in (2, 6) else "none",
            "omit": False,
        })
    return {"id": plan_id, "sequence": [[1, 2, 3, 4], [5, 6, 7, 8]],
            "max_mode": "max1", "simultaneous_gap_out": True,
            "dual_entry": [2, 6, 4, 8], "phases": phases}


def standard_card():
    """The standard site's monitor program, written out as a technician fills the card.

    Deliberately literal, not derived from the rings: it is the second key.
    """
    channels = []
    for ch in range(1, 9):
        e = {"channel": ch, "min_green": 4.0, "min_yellow": 3.0, "min_red_clear": 1.0,
             "red_revert": 2.0, "ped": ch in (2, 4, 6, 8)}
        if e["ped"]:
            e["min_ped_clear"] = 7.0
        channels.append(e)
    return {"channels": channels,
            "permissive": [[1, 5], [1, 6], [2, 5], [2, 6], [3, 7], [3, 8], [4, 7], [4, 8]],
            "flash": {"min_flash": 6.0, "yellow": []}}


def standard_site(intersection="demo-0001"):
    """The built-in 8-phase site as a plain dict (what a site JSON file holds)."""
    detectors = []
    for p in range(1, 9):
        detectors.append({"channel": p, "phase": p, "name": NAMES[p] + " stop bar",
                          "delay": 0.0, "extend": 0.0, "locking": False,
                          "call_at_red_only": False, "extends_green": True})
        detectors.append({"channel": 8 + p, "phase": p, "name": NAMES[p] + " advance",
                          "delay": 0.0, "extend": 0.0, "locking": True,
                          "call_at_red_only": False, "extends_green": True})
    return {
        "intersection": intersection,
        "name": "Main St & 1st Ave",
        "rings": [[1, 2, 3, 4], [5, 6, 7, 8]],
        "barriers": [[1, 2, 5, 6], [3, 4, 7, 8]],
        "phases": [{"phase": p, "name": NAMES[p], "ped": p % 2 == 0} for p in range(1, 9)],
        "conflicts": [],
        "detectors": detectors,
        "ped_detectors": [{"channel": p // 2, "phase": p} for p in (2, 4, 6, 8)],
        "floors": {"min_yellow": 3.0, "min_red_clear": 1.0, "min_green": 4.0,
                   "min_walk": 4.0, "min_ped_clear": 7.0, "max_cycle": 240.0},
        "startup": {"flash": 0.0, "all_red": 4.0, "phases": [2, 6]},
        "monitor": standard_card(),
        "rest": "green",
        "fallback_plan": standard_plan(),
    }
