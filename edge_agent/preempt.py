"""Emergency-vehicle and railroad preemption, NTCIP 1202 preempt-table semantics.

Up to 6 preempts per site. Each one: an input (a hardwired or NTCIP preempt
input, `Inputs.preempts`, or a signed priority request), the non-locking
option, delay, minimum duration, entry truncation (min green, min walk, entry
pedestrian clearance: a running interval ends at the lesser of its own value
and the preempt's, never below the site floors), entry clearance overrides
(never shorter than the phase's own yellow and red clearance), track
clearance phases and green (railroad), dwell phases, dwell pedestrian
phases, minimum dwell, maximum presence, exit phases and a link.

The stages of the preempt being served:

    (call) ─delay─► ENTRY ──► TRACK ──► DWELL ──► EXIT ──► (released)
                      └──────(no track)──┘  └─link─► ENTRY of the linked preempt

A preempt never touches the controller's state: each step `request` writes
this step's target phases, truncations and overrides into the controller's
request seam (requests.Requests), and `observe` reads the greens the
controller then shows, so a stage that begins when its phases turn green
begins in that very millisecond.

Priority: a railroad preempt always overrides an emergency one; among the
same kind the lower number wins; a lower-priority call waits until the
sequence under way has exited.
"""

from edge_agent import events as ev
from edge_agent.validate import is_int, ms_s

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

MAX_PREEMPTS = const(6)

IDLE = const(0)
DELAY = const(1)       # NTCIP notActiveWithCall
ENTRY = const(2)
TRACK = const(3)
DWELL = const(4)
EXIT = const(5)
STAGE_NAMES = ("idle", "delay", "entry", "track", "dwell", "exit")

PREEMPT_KEYS = ("number", "type", "input", "non_locking", "delay", "min_duration",
                "min_green", "min_walk", "ped_clear", "enter_yellow", "enter_red_clear",
                "track_phases", "track_green", "track_yellow", "track_red_clear",
                "dwell_phases", "dwell_ped", "min_dwell", "max_presence",
                "exit_phases", "link")


class Preempt:
    """One preempt's programming (times in ms; -1: no truncation)."""
    __slots__ = ("number", "railroad", "input", "non_locking", "delay", "min_duration",
                 "min_green", "min_walk", "ped_clear", "enter_yellow", "enter_red_clear",
                 "track", "track_green", "track_yellow", "track_red_clear", "dwell",
                 "dwell_ped", "min_dwell", "max_presence", "exit", "link")


def _mask(c, e, key, path, site, known, need=False):
    """A list of phases as a bitmask; the phases must be able to time together."""
    lst = c.array(e.get(key, []), path + "." + key)
    mask = 0
    for j, p in enumerate(lst or ()):
        if not is_int(p) or p not in known:
            c.error("%s.%s[%d]" % (path, key, j), "%s is not a phase of this site" % (p,))
            continue
        if site.conflicts[p] & mask:
            c.error("%s.%s[%d]" % (path, key, j),
                    "phase %d conflicts with another phase of this list" % p)
        mask |= 1 << p
    if need and not mask:
        c.error(path + "." + key, "is required (at least one phase)")
    return mask


def parse_preempts(c, lst, site, known):
    """The site's "preempts" list: every problem is reported, with its path."""
    out = {}
    f = site.floors
    for i, e in enumerate(c.array(lst, "site.preempts") or ()):
        path = "preempts[%d]" % i
        e = c.obj(e, path)
        if e is None:
            continue
        c.unknown_keys(e, PREEMPT_KEYS, path)
        pr = Preempt()
        pr.number = c.integer(e.get("number"), path + ".number", 1, MAX_PREEMPTS)
        if pr.number in out:
            c.error(path + ".number", "preempt %d is defined twice" % pr.number)
        pr.railroad = c.text(e, "type", path, default="emergency",
                             choices=("emergency", "railroad")) == "railroad"
        pr.input = c.integer(e["input"], path + ".input", 1, 64) if "input" in e else 0
        pr.non_locking = c.boolean(e, "non_locking", path, default=False)
        pr.delay = c.seconds(e, "delay", path, 0.0, 600.0, default=0)
        pr.min_duration = c.seconds(e, "min_duration", path, 0.0, 65535.0, default=0)
        pr.min_green = c.seconds(e, "min_green", path, 0.0, 255.0, default=-1)
        pr.min_walk = c.seconds(e, "min_walk", path, 0.0, 255.0, default=-1)
        pr.ped_clear = c.seconds(e, "ped_clear", path, 0.0, 255.0, default=-1)
        for key in ("enter_yellow", "track_yellow"):
            v = c.seconds(e, key, path, 0.0, 25.5, default=-1)
            if v is not None and 0 <= v < f.min_yellow:
                c.error(path + "." + key, "%s s is below the site minimum yellow %s s"
                        % (ms_s(v), ms_s(f.min_yellow)))
            setattr(pr, key, v)
        for key in ("enter_red_clear", "track_red_clear"):
            v = c.seconds(e, key, path, 0.0, 25.5, default=-1)
            if v is not None and 0 <= v < f.min_red_clear:
                c.error(path + "." + key, "%s s is below the site minimum red clearance %s s"
                        % (ms_s(v), ms_s(f.min_red_clear)))
            setattr(pr, key, v)
        pr.track = _mask(c, e, "track_phases", path, site, known)
        pr.track_green = c.seconds(e, "track_green", path, 0.0, 255.0, default=0)
        if pr.track and not pr.track_green:
            c.error(path + ".track_green", "is required with track_phases (0 = no track clearance)")
        pr.dwell = _mask(c, e, "dwell_phases", path, site, known, need=True)
        pr.dwell_ped = _mask(c, e, "dwell_ped", path, site, known)
        for p in site.phases:
            if pr.dwell_ped & (1 << p) and not (pr.dwell & (1 << p) and site.has_ped[p]):
                c.error(path + ".dwell_ped", "phase %d is not a dwell phase with a "
                        "pedestrian phase" % p)
        pr.min_dwell = c.seconds(e, "min_dwell", path, 1.0, 255.0, default=None)
        pr.max_presence = c.seconds(e, "max_presence", path, 0.0, 65535.0, default=0)
        pr.exit = _mask(c, e, "exit_phases", path, site, known)
        pr.link = c.integer(e["link"], path + ".link", 0, MAX_PREEMPTS) if "link" in e else 0
        if pr.number is not None:
            out[pr.number] = pr
    for n in out:
        ln = out[n].link
        if ln and (ln == n or ln not in out):
            c.error("preempts", "preempt %d links to preempt %d, which is %s"
                    % (n, ln, "itself" if ln == n else "not defined"))
    return out


def _rank(pr):
    """Sort key: railroad first, then the lower number."""
    return (0 if pr.railroad else 1, pr.number)


class Preemption:
    """The preempt inputs, the priority between them and the stage served."""

    def __init__(self, site):
        self.site = site
        self.table = site.preempts
        n = MAX_PREEMPTS + 1
        self.wired = [False] * n       # the preempt input as last given (Inputs.preempts)
        self.warning = [False] * n     # a railroad's advance warning input (Inputs.advance_warning)
        self.gate = [False] * n        # its gate down input (Inputs.gate_down)
        self.level = [False] * n       # the call: the input or a live priority request
        self.call_since = [0] * n
        self.valid = [True] * n        # False once max presence is exceeded
        self.pending = [False] * n     # called (memory), timing its delay
        self.pending_since = [0] * n
        self.linked = [False] * n      # called by the link of the active preempt
        self.link_from = 0
        self.requests = {}             # number: (start mono ms, expiry mono ms) of priority requests
        self.active = 0                # the preempt being served, 0: none
        self.stage = IDLE
        self.started = 0               # end of delay (minimum duration counts from here)
        self.stage_since = 0
        self.track_done = False
        self.all_phases = 0
        for p in site.phases:
            self.all_phases |= 1 << p

    @property
    def busy(self):
        return self.active != 0

    def status(self):
        """(preempt number, stage name) of the sequence under way, or None."""
        if not self.active:
            return None
        return (self.active, STAGE_NAMES[self.stage])

    # -- priority requests ---------------------------------------------------

    def priority(self, number, start_ms, expires_ms):
        """A validated priority request: call preempt `number` from `start_ms`
        until `expires_ms` (mono ms); a renewal replaces it."""
        self.requests[number] = (start_ms, expires_ms)

    def clear(self, number):
        """Cancel the priority request for preempt `number`."""
        self.requests.pop(number, None)

    def take(self, now, priority, log):
        """Apply validated PriorityRequests (request or renew, or clear)."""
        for r in priority:
            if r.number not in self.table:
                continue
            if r.clear:
                self.clear(r.number)
            else:
                self.priority(r.number, r.start_ms, r.expires_ms)


    # -- each step -----------------------------------------------------------

    def signals(self, now, warning, gate, log):
        """A railroad's advance warning and gate down inputs, {preempt number: level}:
        logged when they come on (101, 103) and not timed: NTCIP 1202 gives them no
        effect on the sequence (docs/preemption.md)."""
        for levels, held, code in ((warning, self.warning, ev.PREEMPT_ADVANCE_WARNING),
                                   (gate, self.gate, ev.PREEMPT_GATE_DOWN)):
            if not levels:
                continue
            for n in self.table:
                if n in levels:
                    lv = bool(levels[n])
                    if lv and not held[n]:
                        log.append((now, code, n))
                    held[n] = lv

    def request(self, now, levels, green, req, log):
        """Read the inputs, pick the preempt to serve, and fill in `req`."""
        table = self.table
        for n in table:
            pr = table[n]
            if levels is not None and n in levels:
                self.wired[n] = bool(levels[n])
            lv = self.wired[n]
            if self.requests:
                r = self.requests.get(n)
                if r is not None:
                    if now >= r[1]:
                        del self.requests[n]      # not renewed: it expires by itself
                    elif now >= r[0]:
                        lv = True
            if lv != self.level[n]:
                self.level[n] = lv
                self.valid[n] = True              # max presence counts per input change
                log.append((now, ev.PREEMPT_CALL_ON if lv else ev.PREEMPT_CALL_OFF, n))
                if lv:
                    self.call_since[n] = now
            if lv and self.valid[n] and pr.max_presence and \
                    now - self.call_since[n] >= pr.max_presence:
                self.valid[n] = False             # a stuck input stops being served
                log.append((now, ev.PREEMPT_MAX_PRESENCE, n))
            called = self.called(n)
            # A preempt that handed over to its link is served by it.
            if called and not self.pending[n] and n != self.active and n != self.link_from:
                self.pending[n] = True
                self.pending_since[n] = now
            elif self.pending[n] and not called and pr.non_locking:
                self.pending[n] = False           # dropped before its delay ended
        if self.link_from and not (self.level[self.link_from] and self.valid[self.link_from]):
            ln = self.table[self.link_from].link
            self.linked[ln] = False
            self.link_from = 0
            log.append((now, ev.PREEMPT_LINK_OFF, ln))
        self._select(now, green, log)
        if self.active:
            self._fill(now, req, log)

    def called(self, n):
        return (self.level[n] and self.valid[n]) or self.linked[n]

    def _select(self, now, green, log):
        best = None
        for n in self.table:
            if self.pending[n] and (self.linked[n] or
                                    now - self.pending_since[n] >= self.table[n].delay):
                if best is None or _rank(self.table[n]) < _rank(best):
                    best = self.table[n]
        if best is None:
            return
        if self.active and self.stage != EXIT and not self.linked[best.number] \
                and _rank(best) >= _rank(self.table[self.active]):
            return                                 # waits for the sequence under way
        self.pending[best.number] = False
        self.active = best.number
        self.started = now
        self.track_done = not best.track
        self._stage(ENTRY, now)
        log.append((now, ev.PREEMPT_ENTRY, best.number))
        if green & ~(best.track or best.dwell):
            log.append((now, ev.PREEMPT_FORCE_OFF, best.number))

    def _stage(self, stage, now):
        self.stage = stage
        self.stage_since = now

    def _fill(self, now, req, log):
        pr = self.table[self.active]
        req.preempting = True
        req.force_code = ev.PHASE_PREEMPT_FORCE_OFF
        req.min_green, req.walk, req.ped_clear = pr.min_green, pr.min_walk, pr.ped_clear
        req.yellow, req.red_clear = pr.enter_yellow, pr.enter_red_clear
        stage = self.stage
        if stage == TRACK and not self.track_done and now - self.stage_since >= pr.track_green:
            self.track_done = True           # track green over: clear toward the dwell
        if stage == EXIT:
            self._exit_requests(pr, req)
        elif not self.track_done:
            req.target = pr.track
            req.ped_omit = self.all_phases
        else:
            req.target = pr.dwell
            req.ped_omit = self.all_phases & ~pr.dwell_ped
            if pr.track:
                # The track phases end with the track clearance overrides.
                req.yellow, req.red_clear = pr.track_yellow, pr.track_red_clear
            if stage == DWELL and now - self.stage_since >= pr.min_dwell \
                    and now - self.started >= pr.min_duration:
                self._end_dwell(now, pr, req, log)

    def _exit_requests(self, pr, req):
        req.force_code = 0
        req.ped_omit = 0
        req.target = pr.exit
        req.min_green = req.walk = req.ped_clear = -1
        req.yellow = req.red_clear = -1

    def _end_dwell(self, now, pr, req, log):
        n = pr.number
        if pr.link and self.called(n):
            if not self.linked[pr.link]:
                # Link: the linked preempt is called while this one's demand lasts.
                self.linked[pr.link] = True
                self.pending[pr.link] = True
                self.pending_since[pr.link] = now
                self.link_from = n
                log.append((now, ev.PREEMPT_LINK_ON, pr.link))
            return
        if self.called(n):
            return                            # dwell while the call lasts
        self._stage(EXIT, now)
        log.append((now, ev.PREEMPT_EXIT, n))
        self._exit_requests(pr, req)

    def observe(self, now, green, log):
        """After the controller's step: stages that begin when their phases show green."""
        if not self.active:
            return
        pr = self.table[self.active]
        if self.stage == ENTRY and not self.track_done:
            if green & pr.track == pr.track:
                self._stage(TRACK, now)
                log.append((now, ev.PREEMPT_TRACK_CLEARANCE, pr.number))
        elif self.stage in (ENTRY, TRACK) and self.track_done:
            if green & pr.dwell == pr.dwell:
                self._stage(DWELL, now)
                log.append((now, ev.PREEMPT_DWELL, pr.number))
        elif self.stage == EXIT and green & pr.exit == pr.exit:
            self.active = 0
            self.stage = IDLE
            if self.pending[pr.number] and not self.called(pr.number):
                self.pending[pr.number] = False


class PriorityRequest:
    """A priority request that passed its envelope checks, in mono ms: call
    preempt `number` from `start_ms` until `expires_ms`, or clear it."""
    __slots__ = ("number", "start_ms", "expires_ms", "clear", "version")

    def __init__(self, number, start_ms=0, expires_ms=0, clear=False, version=None):
        self.number, self.start_ms, self.expires_ms, self.clear = number, start_ms, expires_ms, clear
        self.version = version        # the sender's counter, for the caller's replay mark
