"""Simulated loop detectors: exact occupancy of a zone from the vehicles over it.

A loop covers [at_m, at_m + length_m] upstream of the stop bar on some lanes.
It is occupied while any vehicle body (length `vehicle_length_m`, front
position x) overlaps it. Three sources make up the occupancy:

- a vehicle driving at speed v: from its front reaching the far edge until
  its rear clears the near edge, i.e. (length + vehicle length) / v — computed
  once on entry, cut short if the vehicle joins a queue;
- the standing queue: vehicle k stands with its front at k·jam_spacing, so the
  zone is covered while the queue is longer than the first index k that
  overlaps it (a stop-bar zone: any queue; an advance loop: spill-back);
- a vehicle leaving the head of the queue: its rear needs (vehicle length −
  at_m) / v to clear a zone that starts within one vehicle length of the bar.

The union of these intervals within a step gives the presence at the end of
the step, the number of on-edges during it (a pulse per passing vehicle on an
advance loop), and an exact on/off log.
"""

INF = 1 << 62


class LoopModel:
    """One detector channel's zone and its occupancy bookkeeping."""

    __slots__ = ("spec", "channel", "at_m", "length_m", "veh_len", "lanes", "k_min", "was_on")

    def __init__(self, spec, veh_len, jam):
        self.spec = spec
        self.channel = spec.channel
        self.at_m = spec.at_m
        self.length_m = spec.length_m
        self.veh_len = veh_len
        self.lanes = []
        self.was_on = False
        # first queue index whose body [k·jam, k·jam + veh_len] overlaps the zone
        self.k_min = None
        k = 0
        while k * jam < self.at_m + self.length_m:
            if k * jam + veh_len > self.at_m:
                self.k_min = k
                break
            k += 1

    def pass_ms(self, mv):
        """Occupancy of one vehicle driving over the zone at the movement's speed."""
        return round((self.length_m + self.veh_len) / mv.speed_mpms)

    def intervals(self, prev, now):
        """Occupied intervals [on, off) that reach into (prev, now]."""
        out = []
        for ln in self.lanes:
            for v in ln.moving:
                done = False
                for iv in v.det_iv:
                    if iv[0] is self:
                        if iv[1] > now:
                            done = True
                        elif iv[2] > prev:
                            out.append((iv[1], iv[2]))
                        break
                if done:
                    break
            for iv in ln.recent_iv:
                if iv[0] is self and iv[2] > prev and iv[1] <= now:
                    out.append((iv[1], iv[2]))
            k = self.k_min
            if k is not None:
                start = prev if ln.q_at_prev > k else None
                for t, q in ln.q_hist:
                    if q > k and start is None:
                        start = t
                    elif q <= k and start is not None:
                        if t > start:
                            out.append((start, t))
                        start = None
                if start is not None:
                    out.append((start, INF))
        return out

    def update(self, prev, now, log):
        """(presence at now, on-edges in (prev, now]); appends (ms, channel, on) edges to `log`."""
        ivs = sorted(iv for iv in self.intervals(prev, now) if iv[0] < iv[1])
        comps = []
        for a, b in ivs:
            if comps and a <= comps[-1][1]:
                if b > comps[-1][1]:
                    comps[-1][1] = b
            else:
                comps.append([a, b])
        edges = 0
        present = False
        for a, b in comps:
            if a > prev or (a == prev and not self.was_on):
                edges += 1
                log.append((a, self.channel, True))
            if b <= now:
                log.append((b, self.channel, False))
            elif a <= now:
                present = True
        self.was_on = present
        return present, edges
