"""Discovery and SETs at connect for the NTCIP poller (drivers/ntcip.py).

`Discovery.connect()` reads what the unit says it has (sysDescr,
maxVehicleDetectors, the status-group count, the volume/occupancy period and
detectors, the pedestrian objects), checks the configured mapping against it
with one log line per problem, leaves out what the unit lacks, and applies the
SETs the operator asked for: read, SET what differs (all or nothing, as the
unit applies it), read back, report. It is a mixin of NtcipDetectorPoller and
uses its request helpers (`_get`, `_integer`, `_stale_all`).
"""

from drivers.ntcip_objects import (
    MAX_VEHICLE_DETECTORS, MAX_STATUS_GROUPS, VOLUME_OCCUPANCY_PERIOD,
    ACTIVE_VOLUME_OCCUPANCY_DETECTORS, MAX_PED_DETECTORS, MAX_PED_STATUS_GROUPS, SYS_DESCR,
    COL_ALARMS, COL_REPORTED_ALARMS, COL_GROUP_ACTIVE, COL_VOLUME, COL_OCCUPANCY, COL_PED_ALARMS,
    THRESHOLDS, vehicle_detector, status_group, volume_occupancy, ped_detector, ped_status_group,
    name_of)
from drivers.ntcip_session import classify, OK, WRONG_TYPE


class Discovery:
    """What the unit has, checked against the mapping; the operator's SETs."""

    async def connect(self):
        """Discover what the unit has, check the mapping against it, apply the operator's SETs."""
        self.skip.clear()
        oids = [SYS_DESCR, MAX_VEHICLE_DETECTORS, MAX_STATUS_GROUPS, VOLUME_OCCUPANCY_PERIOD,
                ACTIVE_VOLUME_OCCUPANCY_DETECTORS]
        if self.ped_detectors and self.cfg.ped_objects != "vehicle":
            oids += [MAX_PED_DETECTORS, MAX_PED_STATUS_GROUPS]
        r = await self._get(oids)
        if r is None:
            self._stale_all()
            return False
        self.counters["discoveries"] += 1
        v = r.values
        self.skip.clear()           # discovery may ask for what a unit lacks; polls start afresh
        n_det = self._scalar(v, MAX_VEHICLE_DETECTORS, 1, 255)
        n_grp = self._scalar(v, MAX_STATUS_GROUPS, 1, 255)
        period = self._scalar(v, VOLUME_OCCUPANCY_PERIOD, 0, 255)
        n_vo = self._scalar(v, ACTIVE_VOLUME_OCCUPANCY_DETECTORS, 0, 255)
        n_ped = self._scalar(v, MAX_PED_DETECTORS, 0, 255)
        n_ped_grp = self._scalar(v, MAX_PED_STATUS_GROUPS, 0, 255)
        descr = v.get(SYS_DESCR)
        self.device = {"sys_descr": (descr.prettyPrint() if descr is not None
                                     and classify(descr)[0] == WRONG_TYPE else None),
                       "max_vehicle_detectors": n_det, "status_groups": n_grp,
                       "volume_period_s": period, "volume_detectors": n_vo,
                       "max_ped_detectors": n_ped, "ped_status_groups": n_ped_grp}
        problems = []
        if self.ped_detectors and self.cfg.ped_objects != "vehicle" and n_ped_grp and n_ped:
            self.ped_mode = "pedestrian"
        else:
            self.ped_mode = "vehicle"
            if self.ped_detectors and self.cfg.ped_objects == "pedestrian":
                problems.append("ped_objects is \"pedestrian\" but the unit has no pedestrian "
                                "detector status groups (maxPedestrianDetectorGroups): "
                                "pedestrian detectors are read from the vehicle detector objects")
        vehicle = set(self.detectors) | (set(self.ped_detectors) if self.ped_mode == "vehicle"
                                         else set())
        if n_det is None:
            problems.append("maxVehicleDetectors not answered: the detector mapping cannot be checked")
        else:
            beyond = sorted(d for d in vehicle if d > n_det)
            if beyond:
                problems.append("detectors %s are mapped but the unit has maxVehicleDetectors %d: "
                                "they will stay STALE" % (_ranges(beyond), n_det))
        if n_grp is not None:
            need = max([(d - 1) // 8 + 1 for d in vehicle] or [0])
            if need > n_grp:
                problems.append("the mapping needs %d vehicle detector status groups, the unit has "
                                "maxVehicleDetectorStatusGroups %d" % (need, n_grp))
        if self.ped_mode == "pedestrian":
            beyond = sorted(d for d in self.ped_detectors if d > n_ped)
            if beyond:
                problems.append("pedestrian detectors %s are mapped but the unit has "
                                "maxPedestrianDetectors %d" % (_ranges(beyond), n_ped))
        self.volume = bool(period)
        if not period:
            problems.append("volumeOccupancyPeriod %s: the unit reports no volume/occupancy, "
                            "no counts will be read" % ("not answered" if period is None else 0))
        elif n_vo is not None and vehicle and max(vehicle) > n_vo:
            problems.append("activeVolumeOccupancyDetectors is %d: detectors above it have no "
                            "volume/occupancy" % n_vo)
        self.problems = problems
        # What the unit said it lacks is not asked for: those detectors stay STALE.
        for d in vehicle:
            if n_det is not None and d > n_det:
                self.skip.update((vehicle_detector(COL_ALARMS, d),
                                  vehicle_detector(COL_REPORTED_ALARMS, d),
                                  volume_occupancy(COL_VOLUME, d), volume_occupancy(COL_OCCUPANCY, d)))
                self.skip.update(vehicle_detector(col, d) for _, col, _, _ in THRESHOLDS)
            if n_grp is not None and (d - 1) // 8 + 1 > n_grp:
                self.skip.add(status_group(COL_GROUP_ACTIVE, (d - 1) // 8 + 1))
        if self.ped_mode == "pedestrian":
            for d in self.ped_detectors:
                if d > n_ped:
                    self.skip.add(ped_detector(COL_PED_ALARMS, d))
                    self.skip.update(ped_detector(col, d) for _, _, col, _ in THRESHOLDS)
                if (d - 1) // 8 + 1 > n_ped_grp:
                    self.skip.add(ped_status_group(COL_GROUP_ACTIVE, (d - 1) // 8 + 1))
        for p in problems:
            self.log("warning", "ntcip discovery: " + p, source=self.source)
        self.log("info", "ntcip unit connected", source=self.source, version=self.cfg.version,
                 ped_objects=self.ped_mode, **{k: x for k, x in self.device.items() if x is not None})
        if self.cfg.set:
            await self._apply_sets()
        self.connected = True
        self.vo_sequence = None
        self.next_slow = 0.0
        return True

    def _scalar(self, values, oid, lo, hi):
        return self._integer(values, oid, lo, hi) if oid in values else None

    def _set_targets(self, key):
        """[(oid, value)] for one SET key of the configuration."""
        if key == "volume_period_s":
            return [(VOLUME_OCCUPANCY_PERIOD, self.cfg.set[key])]
        vcol, pcol = next((v, p) for k, v, p, _ in THRESHOLDS if k == key)
        per = self.cfg.set[key]
        out = []
        for d in sorted(self.detectors):
            if d in per or "*" in per:
                out.append((vehicle_detector(vcol, d), per.get(d, per.get("*"))))
        for d in sorted(self.ped_detectors):
            if d in per or "*" in per:
                oid = ped_detector(pcol, d) if self.ped_mode == "pedestrian" \
                    else vehicle_detector(vcol, d)
                out.append((oid, per.get(d, per.get("*"))))
        return out

    async def _apply_sets(self):
        """SET what the operator asked for where the unit differs, read it back, report it."""
        for key in sorted(self.cfg.set):
            # Detectors discovery found beyond the unit are left out (and named), so that
            # one of them does not get the whole all-or-nothing SET refused.
            targets = self._set_targets(key)
            missing = [name_of(o) for o, _ in targets if o in self.skip]
            targets = [(o, x) for o, x in targets if o not in self.skip]
            if missing:
                self.log("warning", "ntcip set %s: not on the unit: %s" % (key, ", ".join(missing)),
                         source=self.source)
            if not targets:
                continue
            before = await self._get([o for o, _ in targets])
            result = "unit did not answer"
            if before is not None:
                change = [(o, x) for o, x in targets
                          if classify(before.values.get(o)) != (OK, x)]
                result = "already set"
                if change:
                    self.counters["polls"] += 1
                    r = await self.session.set(change)
                    if r.error is None:
                        self._answered(r)
                        result = "applied"
                    elif r.error == "timeout" or r.error.startswith("transport"):
                        result = "unit did not answer"
                    else:
                        self._answered(r)
                        at = change[r.index - 1][0] if 1 <= r.index <= len(change) else None
                        result = "refused: %s at %s" % (r.error, name_of(at) if at else r.index)
            after = await self._get([o for o, _ in targets])
            read_back = {}
            if after is not None:
                for o, _ in targets:
                    kind, x = classify(after.values.get(o))
                    read_back[name_of(o)] = x if kind == OK else kind
            asked = {name_of(o): x for o, x in targets}
            self.applied[key] = {"asked": asked, "read_back": read_back, "result": result}
            ok = result in ("applied", "already set") and read_back == asked
            if key == "volume_period_s" and after is not None and VOLUME_OCCUPANCY_PERIOD in after.values:
                kind, x = classify(after.values[VOLUME_OCCUPANCY_PERIOD])
                if kind == OK:
                    self.device["volume_period_s"] = x
                    self.volume = bool(x)
            self.log("info" if ok else "warning", "ntcip set %s: %s" % (key, result),
                     source=self.source, asked=asked, read_back=read_back)


def _ranges(nums):
    """[1, 2, 3, 7] -> "1-3, 7"."""
    out = []
    for n in nums:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in out)
