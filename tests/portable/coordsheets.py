"""A coordinated pattern on the standard 8-phase site, for the portable tests.

Cycle 100 s, offset 30 s, coordinated 2 + 6; splits 1/5: 15 s, 2/6: 35 s,
3/7: 15 s, 4/8: 35 s (barrier groups 50 + 50 s in both rings).
"""

from edge_agent.standard import standard_site, standard_plan


def coordinated_plan(plan_id="coord-100", cycle=100.0, offset=30.0, splits=None, **opts):
    plan = standard_plan(plan_id)
    coord = {"pattern": 3, "cycle": cycle, "offset": offset,
             "splits": splits or {"1": 15.0, "2": 35.0, "3": 15.0, "4": 35.0,
                                  "5": 15.0, "6": 35.0, "7": 15.0, "8": 35.0},
             "coordinated": [2, 6], "force_mode": "fixed", "max_mode": "inhibit",
             "correction": "shortway", "max_correction": 0.17}
    coord.update(opts)
    plan["coordination"] = coord
    return plan


def coordinated_site(**opts):
    site = standard_site()
    site["fallback_plan"] = coordinated_plan(**opts)
    return site
