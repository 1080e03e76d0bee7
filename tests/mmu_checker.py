"""An independent reading of the monitor's rules (docs/controller.md, "The monitor"), for tests.

It shares no code with edge_agent.monitor or edge_agent.monitor_card: it reads
the raw `monitor` section of a site dict and judges each step's indications by
its own bookkeeping (what each head shows and since when, written as letters).
`verdict(now, veh, ped)` returns the first broken rule's name, or None, and
only then takes the step into its history.
"""

from edge_agent.indications import (DARK, RED, YELLOW, GREEN, FLASH_RED, FLASH_YELLOW,
                                    DONT_WALK, WALK, PED_CLEAR, PED_DARK)

VEH = {RED: "R", YELLOW: "Y", GREEN: "G", FLASH_RED: "r", FLASH_YELLOW: "y", DARK: "-"}
PED = {DONT_WALK: "D", WALK: "W", PED_CLEAR: "C", PED_DARK: "-"}
MOVES = {"R": "RGry", "G": "GY", "Y": "YR", "r": "ryR", "y": "yrR"}
PED_MOVES = {"D": "DW-", "W": "WC", "C": "CD", "-": "-D"}


def _ms(seconds):
    return int(round(seconds * 10)) * 100


class MmuChecker:
    def __init__(self, card, now=0):
        self.channels = {}
        for e in card["channels"]:
            self.channels[e["channel"]] = {
                "ped": e.get("ped", False),
                "green": _ms(e.get("min_green", 0.0)),
                "yellow": _ms(e["min_yellow"]),
                "red": _ms(e["min_red_clear"]),
                "revert": _ms(e.get("red_revert", 2.0)),
                "clear": _ms(e.get("min_ped_clear", 0.0)),
            }
        self.friends = set(frozenset(p) for p in card.get("permissive", []))
        self.reset(now)

    def reset(self, now):
        self.shows = {ch: ("r", now) for ch in self.channels}     # (letter, since)
        self.peds = {ch: ("-", now) for ch in self.channels}
        self.red_from = {ch: None for ch in self.channels}
        self.last_yellow_end = {ch: None for ch in self.channels}

    def conflict(self, a, b):
        return a != b and frozenset((a, b)) not in self.friends

    def verdict(self, now, veh, ped):
        chans = sorted(self.channels)
        letters = {}
        for ch in chans:
            if veh[ch] not in VEH:
                return "unknown indication"
            letters[ch] = VEH[veh[ch]]
        if "-" in letters.values():
            return "red fail"
        showing = set(letters.values())
        if showing & set("GY") and showing & set("ry"):
            return "flash mixed"
        go = [ch for ch in chans if letters[ch] in "GYy"]
        for a in go:
            for b in go:
                if self.conflict(a, b):
                    return "conflict"
        red_from = dict(self.red_from)
        yellow_end = dict(self.last_yellow_end)
        turned_green = []
        for ch in chans:
            was, since = self.shows[ch]
            now_ = letters[ch]
            if now_ == was:
                continue
            if now_ not in MOVES[was]:
                return "sequence"
            lasted = now - since
            limits = self.channels[ch]
            if was == "G" and lasted < limits["green"]:
                return "short green"
            if was == "Y":
                if lasted < limits["yellow"]:
                    return "short yellow"
                yellow_end[ch] = now
            if now_ == "R":
                red_from[ch] = now
            if now_ == "G":
                turned_green.append(ch)
        for ch in turned_green:
            if yellow_end[ch] is not None and now - yellow_end[ch] < self.channels[ch]["revert"]:
                return "red revert"
            for other in chans:
                if self.conflict(ch, other) and now - red_from[other] < self.channels[other]["red"]:
                    return "short red clearance"
        ped_letters = {}
        for ch in chans:
            if not self.channels[ch]["ped"]:
                continue
            if ped[ch] not in PED:
                return "unknown indication"
            p = ped_letters[ch] = PED[ped[ch]]
            v = letters[ch]
            if p == "-" and v in "RGY":
                return "red fail"
            if p in "WC" and v != "G":
                return "walk without green"
            was, since = self.peds[ch]
            if p == was:
                continue
            if p not in PED_MOVES[was]:
                return "short pedestrian clearance" if was == "W" else "sequence"
            if was == "C" and now - since < self.channels[ch]["clear"]:
                return "short pedestrian clearance"
        for ch in chans:
            if letters[ch] != self.shows[ch][0]:
                self.shows[ch] = (letters[ch], now)
        for ch, p in ped_letters.items():
            if p != self.peds[ch][0]:
                self.peds[ch] = (p, now)
        self.red_from = red_from
        self.last_yellow_end = yellow_end
        return None
