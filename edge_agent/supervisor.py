"""The supervisor: which plan the unit should run, central or local.

The central link is healthy only while the driver reports the broker session
connected AND central's heartbeat is fresh (silence for `loss_ms` is a loss,
whatever TCP says). Central control needs the link healthy for `stable_ms`
without a break (no flapping) and a valid, unexpired central plan. On loss,
the central plan is kept for `holdover_ms` (or until a plan hold central
asked for ends: `Inputs.hold_central_ms`), then the site's local fallback
plan is requested; the controller takes any plan change only at its next
safe point (a barrier crossing, through full clearances).
"""

from edge_agent import events as ev

SOURCE_LOCAL = "local"
SOURCE_CENTRAL = "central"


class LinkPolicy:
    """Link supervision times (ms)."""
    __slots__ = ("loss_ms", "holdover_ms", "stable_ms")

    def __init__(self, loss_ms=3000, holdover_ms=0, stable_ms=10000):
        self.loss_ms, self.holdover_ms, self.stable_ms = loss_ms, holdover_ms, stable_ms


class CentralPlan:
    """A central plan that passed the envelope checks: plan, version, expiry (wall ms)."""
    __slots__ = ("plan", "version", "expires_ms")

    def __init__(self, plan, version, expires_ms=None):
        self.plan, self.version, self.expires_ms = plan, version, expires_ms


class Supervisor:
    """Tracks link health and decides the wanted plan source each step."""

    def version_of(self, plan):
        """The central version `plan` was offered as, or None (a local plan)."""
        for p, v in reversed(self.offered):
            if p is plan:
                return v
        return None

    def __init__(self, site, policy=None):
        self.site = site
        self.policy = policy or LinkPolicy()
        self.connected = False
        self.last_heartbeat = None
        self.healthy_since = None     # ms the link became healthy, None while down
        self.link_up = False          # healthy and stable: central may control
        self.lost_at = None
        self.central = None           # CentralPlan offered by central, or None
        self.offered = []             # [(plan, version)] of recent central offers, newest last
        self.wanted = None            # the plan last requested from the controller
        self.source = SOURCE_LOCAL

    def step(self, now, inputs, controller, log):
        """Update link health from `inputs`, and request a plan change if needed."""
        pol = self.policy
        if inputs.link_up is not None:
            self.connected = bool(inputs.link_up)
        if inputs.heartbeat:
            self.last_heartbeat = now
        healthy = (self.connected and self.last_heartbeat is not None
                   and now - self.last_heartbeat < pol.loss_ms)
        if healthy:
            if self.healthy_since is None:
                self.healthy_since = now
            if not self.link_up and now - self.healthy_since >= pol.stable_ms:
                self.link_up = True
                self.lost_at = None
                log.append((now, ev.LINK_UP, 0))
        else:
            self.healthy_since = None
            if self.link_up:
                self.link_up = False
                self.lost_at = now
                log.append((now, ev.LINK_DOWN, 0))
        offer = inputs.central_plan
        if offer is not None:
            self.central = offer
            self.offered = (self.offered + [(offer.plan, offer.version)])[-8:]
        c = self.central
        if c is not None and c.expires_ms is not None and inputs.wall_ms is not None \
                and inputs.wall_ms >= c.expires_ms:
            log.append((now, ev.CENTRAL_PLAN_EXPIRED, c.version))
            self.central = c = None
        forced_local = inputs.local_until_ms is not None and now < inputs.local_until_ms
        if forced_local:
            # A technician on site put the unit in local control for a while.
            source, plan = SOURCE_LOCAL, self.site.fallback_plan
        elif c is not None and self.link_up:
            source, plan = SOURCE_CENTRAL, c.plan
        elif c is not None and self.source == SOURCE_CENTRAL and self.lost_at is not None \
                and (now - self.lost_at < pol.holdover_ms
                     or (inputs.hold_central_ms is not None and now < inputs.hold_central_ms)):
            # Hold-over after a loss, or a plan hold central asked for.
            source, plan = SOURCE_CENTRAL, c.plan
        else:
            source, plan = SOURCE_LOCAL, self.site.fallback_plan
        if source != self.source or (plan is not self.wanted and source == SOURCE_CENTRAL):
            if plan is not controller.plan or controller.pending is not None:
                controller.set_plan(plan, now, log)
            log.append((now, ev.SOURCE_CENTRAL if source == SOURCE_CENTRAL else ev.SOURCE_LOCAL,
                        c.version if source == SOURCE_CENTRAL else 0))
            self.source = source
            self.wanted = plan
