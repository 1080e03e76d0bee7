"""Monitor cards for the test sites, written the way a technician fills one in.

The permissive pairs come from the site dict's own rings, barriers and extra
conflicts by this file's own reasoning (two phases may time together when they
sit in different rings, in the same barrier group, and are not listed as a
conflict); it shares no code with edge_agent.monitor_card. The minimums are
the site floors unless given.
"""


def card(site, min_green=None, min_yellow=None, min_red_clear=None, red_revert=None,
         min_ped_clear=None, min_flash=6.0, flash_yellow=()):
    floors = site.get("floors", {})
    rings = site["rings"]
    barriers = site["barriers"]
    extra = [sorted(pair) for pair in site.get("conflicts", [])]
    phases = sorted(e["phase"] for e in site["phases"])
    ped = dict((e["phase"], e.get("ped", False)) for e in site["phases"])

    def ring(p):
        return [i for i, r in enumerate(rings) if p in r][0]

    def group(p):
        return [i for i, g in enumerate(barriers) if p in g][0]

    permissive = []
    for a in phases:
        for b in phases:
            if a < b and ring(a) != ring(b) and group(a) == group(b) and [a, b] not in extra:
                permissive.append([a, b])
    channels = []
    for p in phases:
        e = {"channel": p, "ped": ped[p],
             "min_green": floors.get("min_green", 4.0) if min_green is None else min_green,
             "min_yellow": floors.get("min_yellow", 3.0) if min_yellow is None else min_yellow,
             "min_red_clear": (floors.get("min_red_clear", 1.0) if min_red_clear is None
                               else min_red_clear),
             "red_revert": (floors.get("min_red_revert", 2.0) if red_revert is None
                            else red_revert)}
        if ped[p]:
            e["min_ped_clear"] = (floors.get("min_ped_clear", 7.0) if min_ped_clear is None
                                  else min_ped_clear)
        channels.append(e)
    return {"channels": channels, "permissive": permissive,
            "flash": {"min_flash": min_flash, "yellow": list(flash_yellow)}}
