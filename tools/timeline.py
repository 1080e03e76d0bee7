"""Readable views of an event log: a phase timeline and a termination summary."""

from edge_agent import events as ev

REASONS = {ev.PHASE_GAP_OUT: "gap-out", ev.PHASE_MAX_OUT: "max-out",
           ev.PHASE_FORCE_OFF: "force-off"}


def fmt_s(ms):
    return "%8.1f s" % (ms / 1000)


def timeline_lines(log, site, until_ms=None):
    """One line per green served: when, which ring, how long and why it ended."""
    began = {}
    rows = []          # (start ms, order in the log, text): sorted by start time
    for i, (ms, code, p) in enumerate(log):
        if until_ms is not None and ms > until_ms:
            break
        if code == ev.PHASE_BEGIN_GREEN:
            began[p] = (ms, i)
        elif code in REASONS and p in began:
            start, order = began.pop(p)
            name = site.phase_names[p] or ""
            rows.append((start, order, "%s  ring %d  phase %-2d %-12s green %5.1f s  ended by %s"
                         % (fmt_s(start), site.ring_of[p] + 1, p, name, (ms - start) / 1000,
                            REASONS[code])))
        elif code == ev.BARRIER_TERMINATION:
            rows.append((ms, i, "%s  ---- barrier %d crossed ----" % (fmt_s(ms), p)))
        elif code == ev.PED_BEGIN_WALK:
            rows.append((ms, i, "%s           phase %-2d walk" % (fmt_s(ms), p)))
        elif code == ev.MONITOR_FAULT:
            rows.append((ms, i, "%s  !!!! monitor fault %d: flash" % (fmt_s(ms), p)))
    rows.sort()
    return [text for _, _, text in rows]


def termination_summary(log, site):
    """Per phase: greens served, gap-outs, max-outs, force-offs, mean green (s)."""
    rows = {p: [0, 0, 0, 0, 0] for p in site.phases}
    began = {}
    for ms, code, p in log:
        if code == ev.PHASE_BEGIN_GREEN:
            began[p] = ms
            rows[p][0] += 1
        elif code in REASONS and p in rows:
            rows[p][{ev.PHASE_GAP_OUT: 1, ev.PHASE_MAX_OUT: 2, ev.PHASE_FORCE_OFF: 3}[code]] += 1
            if p in began:
                rows[p][4] += ms - began.pop(p)
    out = []
    for p in site.phases:
        n, gap, mx, force, total = rows[p]
        ended = gap + mx + force
        out.append((p, site.phase_names[p], n, gap, mx, force, total / ended / 1000 if ended else 0.0))
    return out


def summary_lines(log, site):
    lines = ["phase  name          greens  gap-out  max-out  force-off  mean green",
             "-----  ------------  ------  -------  -------  ---------  ----------"]
    for p, name, n, gap, mx, force, mean in termination_summary(log, site):
        lines.append("%5d  %-12s  %6d  %7d  %7d  %9d  %8.1f s" % (p, name[:12], n, gap, mx, force, mean))
    return lines
