"""The monitor's own program: the site's `monitor` section, like an MMU's compatibility card.

A technician writes it independently of the rings and barriers the controller
times from: which channels the cabinet monitors, which pairs of channels may
show green together (permissive pairs; every other pair conflicts), each
channel's minimum green, yellow, red clearance, red revert and pedestrian
clearance, and the flash settings. The monitor reads this and the indications
of each step, nothing else. `cross_check` compares it with what the controller
could time and reports every disagreement with its path: the card is the
second key, so a typo in the rings must disagree with it, never be shared.

Channel n monitors phase n's vehicle head (and its pedestrian head when the
channel says `"ped": true`).
"""

from edge_agent.validate import is_int, ms_s
from edge_agent.indications import MAX_PHASES

CARD_KEYS = ("channels", "permissive", "flash")
CHANNEL_KEYS = ("channel", "ped", "min_green", "min_yellow", "min_red_clear",
                "red_revert", "min_ped_clear")
FLASH_KEYS = ("min_flash", "yellow")


class MonitorCard:
    """A validated monitor program; per-channel lists indexed by channel (ms)."""
    __slots__ = ("channels", "ped", "permissive", "min_green", "min_yellow",
                 "min_red_clear", "red_revert", "min_ped_clear", "min_flash",
                 "flash_yellow")

    def permits(self, a, b):
        """True when channels a and b may show green or yellow together."""
        return bool(self.permissive[a] & (1 << b))


def parse_card(c, d):
    """Parse the site's `monitor` section with Checker `c`; returns a MonitorCard."""
    n = MAX_PHASES + 1
    k = MonitorCard()
    k.channels = []
    k.ped = [False] * n
    k.permissive = [0] * n
    for name in ("min_green", "min_yellow", "min_red_clear", "red_revert", "min_ped_clear"):
        setattr(k, name, [0] * n)
    k.min_flash = 6000
    k.flash_yellow = 0
    if "monitor" not in d:
        c.error("site.monitor", "is required (the monitor's own program: channels, permissive "
                "pairs, minimum clearances, flash; see docs/configuration.md)")
        return k
    m = c.obj(d["monitor"], "monitor")
    if m is None:
        return k
    c.unknown_keys(m, CARD_KEYS, "monitor")
    if "channels" not in m:
        c.error("monitor.channels", "is required")
    for i, e in enumerate(c.array(m.get("channels", []), "monitor.channels") or ()):
        path = "monitor.channels[%d]" % i
        e = c.obj(e, path)
        if e is None:
            continue
        c.unknown_keys(e, CHANNEL_KEYS, path)
        ch = c.integer(e.get("channel"), path + ".channel", 1, MAX_PHASES)
        if ch is None:
            continue
        if ch in k.channels:
            c.error(path + ".channel", "channel %d is listed twice" % ch)
            continue
        k.channels.append(ch)
        k.ped[ch] = c.boolean(e, "ped", path, default=False)
        k.min_green[ch] = c.seconds(e, "min_green", path, 0.0, 60.0, default=0) or 0
        # A yellow below 3 s is outside MUTCD practice; no card may allow it.
        k.min_yellow[ch] = c.seconds(e, "min_yellow", path, 3.0, 10.0) or 0
        k.min_red_clear[ch] = c.seconds(e, "min_red_clear", path, 0.0, 10.0) or 0
        k.red_revert[ch] = c.seconds(e, "red_revert", path, 0.0, 25.5, default=2000) or 0
        if k.ped[ch]:
            k.min_ped_clear[ch] = c.seconds(e, "min_ped_clear", path, 1.0, 120.0) or 0
        elif "min_ped_clear" in e:
            c.error(path + ".min_ped_clear", "channel %d has no pedestrian head (\"ped\": false)" % ch)
    k.channels.sort()
    known = set(k.channels)
    for i, pair in enumerate(c.array(m.get("permissive", []), "monitor.permissive") or ()):
        path = "monitor.permissive[%d]" % i
        if not isinstance(pair, list) or len(pair) != 2:
            c.error(path, "must be a pair of channels like [2, 6]")
            continue
        a, b = pair
        if not (is_int(a) and is_int(b) and a in known and b in known):
            c.error(path, "%s is not a pair of monitored channels" % (pair,))
            continue
        if a == b:
            c.error(path, "a channel cannot be permissive with itself")
            continue
        k.permissive[a] |= 1 << b
        k.permissive[b] |= 1 << a
    f = c.obj(m.get("flash", {}), "monitor.flash") or {}
    c.unknown_keys(f, FLASH_KEYS, "monitor.flash")
    k.min_flash = c.seconds(f, "min_flash", "monitor.flash", 0.0, 600.0, default=6000)
    for j, ch in enumerate(c.array(f.get("yellow", []), "monitor.flash.yellow") or ()):
        path = "monitor.flash.yellow[%d]" % j
        if not is_int(ch) or ch not in known:
            c.error(path, "%s is not a monitored channel" % (ch,))
            continue
        for other in k.channels:
            if k.flash_yellow & (1 << other) and not k.permits(ch, other):
                c.error(path, "channels %d and %d conflict: they cannot both flash yellow"
                        % (other, ch))
        k.flash_yellow |= 1 << ch
    return k


def cross_check_site(c, site, k):
    """Every disagreement between what the controller could time and the card.

    The controller may time two phases together when they are in different
    rings, in the same barrier group, and not in the site's extra conflicts.
    Each such pair must be permissive on the card, and each permissive pair
    must be such a pair: the card is exactly the intended compatibility.
    """
    phases = site.phases
    for p in phases:
        if p not in k.channels:
            c.error("monitor.channels", "phase %d is not monitored: add channel %d" % (p, p))
        elif site.has_ped[p] != k.ped[p]:
            c.error("monitor.channels", "channel %d: \"ped\" is %s but phase %d %s a pedestrian phase"
                    % (p, "true" if k.ped[p] else "false", p, "has" if site.has_ped[p] else "has no"))
    for ch in k.channels:
        if ch not in phases:
            c.error("monitor.channels", "channel %d drives no phase of this site" % ch)
    for i, p in enumerate(phases):
        for q in phases[i + 1:]:
            timed = not site.conflicts[p] & (1 << q)
            allowed = p in k.channels and q in k.channels and k.permits(p, q)
            if timed and not allowed:
                c.error("monitor.permissive", "phases %d and %d can time together (rings %s, "
                        "barriers %s) but the monitor does not permit channels %d and %d: "
                        "fix the rings/barriers or the card"
                        % (p, q, _where(site.rings, p, q), _where(site.groups, p, q), p, q))
            elif allowed and not timed:
                c.error("monitor.permissive", "channels %d and %d are permissive on the card "
                        "but the controller never times phases %d and %d together: "
                        "a card wider than the design weakens the monitor" % (p, q, p, q))
    for p in phases:
        if p in k.channels and site.startup_all_red is not None \
                and site.startup_all_red < k.min_red_clear[p]:
            c.error("startup.all_red", "%s s is below channel %d's monitor red clearance %s s"
                    % (ms_s(site.startup_all_red), p, ms_s(k.min_red_clear[p])))


def check_plan_timing(c, path, p, k, pl):
    """A plan must never time below what the monitor enforces on its channel."""
    if p not in k.channels:
        return
    for key, have, need in (("min_green", pl.min_green[p], k.min_green[p]),
                            ("yellow", pl.yellow[p], k.min_yellow[p]),
                            ("red_clear", pl.red_clear[p], k.min_red_clear[p]),
                            ("red_revert", pl.red_revert[p], k.red_revert[p]),
                            ("ped_clear", pl.ped_clear[p], k.min_ped_clear[p] if k.ped[p] else 0)):
        where = path + "." + key
        if have < need and not _reported(c, where):
            c.error(where, "%s s is below the monitor's %s %s s for channel %d "
                    "(monitor.channels: %s)" % (ms_s(have), _CARD_NAME[key], ms_s(need), p,
                                                _CARD_KEY[key]))


def _reported(c, where):
    """True when `where` already has a problem (a site floor): one message is enough."""
    head = where + ":"
    for e in c.errors:
        if e.startswith(head):
            return True
    return False


_CARD_NAME = {"min_green": "minimum green", "yellow": "minimum yellow",
              "red_clear": "minimum red clearance", "red_revert": "red revert",
              "ped_clear": "minimum pedestrian clearance"}
_CARD_KEY = {"min_green": "min_green", "yellow": "min_yellow", "red_clear": "min_red_clear",
             "red_revert": "red_revert", "ped_clear": "min_ped_clear"}


def _where(groups, p, q):
    """Which group of `groups` each of p and q sits in, for messages (1-based)."""
    gp = gq = "?"
    for i, g in enumerate(groups):
        if p in g:
            gp = i + 1
        if q in g:
            gq = i + 1
    return "%s/%s" % (gp, gq)
