"""The NTCIP poller against a unit that behaves like a device: response delay, missing
optional objects, SNMPv1 errors, SNMPv3, SETs, pedestrian objects, discovery.

Real SNMP over UDP on 127.0.0.1 (hil/ntcip_emulator.py), real time. Waits are
for a condition (responses counted, a report seen), never a bare sleep.
"""

import time

import pytest

from drivers.ntcip import NtcipDetectorPoller, monotonic_ms
from drivers.ntcip_config import NtcipConfigError, parse_ntcip
from edge_agent import detectors as core
from edge_agent.diagnostics import ALARM_SHIFT
from hil.ntcip_emulator import NtcipEmulator

V3 = {"version": "v3", "user": "edge", "auth_protocol": "SHA-256", "auth_key": "auth-pass-1",
      "priv_protocol": "AES-128", "priv_key": "priv-pass-1"}


class Unit:
    """An emulator and a poller on it; `log` collects the poller's run-log lines."""

    def __init__(self, emu_kw=None, **poll_kw):
        self.emu = NtcipEmulator(**dict({"detectors": 8}, **(emu_kw or {})))
        self.port = self.emu.start()
        self.log = []
        poll_kw.setdefault("detectors", {d: d for d in range(1, 9)})
        self.poller = NtcipDetectorPoller(
            "127.0.0.1", self.port, log=lambda level, msg, **f: self.log.append((level, msg, f)),
            **poll_kw)
        self.reports = []
        self.poller.start()

    def run_until(self, cond, limit_s=10.0):
        """Tick the emulator and collect reports until cond(self) holds (or fail at limit_s)."""
        deadline = time.monotonic() + limit_s
        while not cond(self):
            assert time.monotonic() < deadline, ("condition not reached", self.poller.stats())
            self.emu.tick(monotonic_ms())
            self.reports += self.poller.reports()
            time.sleep(0.02)
        self.reports += self.poller.reports()

    def responses(self, n):
        return lambda u: u.poller.stats()["responses"] >= n

    def close(self):
        self.poller.stop()
        self.emu.stop()

    def of(self, kind, ped=False):
        return [r for r in self.reports if r.kind == kind and r.ped == ped]

    def lines(self, level="warning"):
        return [m for lv, m, _ in self.log if lv == level]


@pytest.fixture
def unit():
    made = []

    def make(*a, **kw):
        u = Unit(*a, **kw)
        made.append(u)
        return u
    yield make
    for u in made:
        u.close()


# -- delays: real timeouts ------------------------------------------------------------

DELAYS_MS = (0, 20, 40, 80)
PERIOD_MS = 100
SCHED_SLACK_MS = 30      # thread scheduling on a loaded 2-core test machine
LOST_POLL_MS = 300       # an edge later than this beyond the bound waited for a lost poll


def test_polls_do_not_time_out_and_edges_arrive_within_a_period_plus_the_delay(unit):
    """0/20/40/80 ms units, timeout 200 ms: <= 0.5 % of polls time out (pysnmp's 100 ms tick
    made it 25 % at 20 ms and 43 % at 40 ms), and presence edges are in a report at most one
    poll period plus the delay after they happened at the unit: 95 % of them within that
    bound plus 30 ms of scheduling, every one well short of a lost poll's cost."""
    units = {d: unit({"delay_ms": d}, timeout_s=0.2, slow_s=1.0) for d in DELAYS_MS}
    flips = {d: [] for d in DELAYS_MS}
    seen = {d: [] for d in DELAYS_MS}
    state = False
    deadline = time.monotonic() + 12.0
    next_flip = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_flip:
            state = not state
            for d, u in units.items():
                with u.emu.lock:
                    u.emu.presence[3] = state
                flips[d].append((monotonic_ms(), state))
            next_flip = now + 0.37          # out of phase with the 100 ms polls
        for d, u in units.items():
            for r in u.poller.reports():
                if r.kind == core.PRESENCE and 3 in r.presence:
                    seen[d].append((r.rx_ms, r.presence[3]))
        time.sleep(0.005)
    for d, u in units.items():
        st = u.poller.stats()
        assert st["polls"] >= 80, (d, st)
        assert st["timeouts"] * 200 <= st["polls"], (d, st["timeouts"], st["polls"])
        assert st["rtt_ms"]["p50"] >= d, (d, st["rtt_ms"])
        late = [next(rx for rx, v in seen[d] if rx >= t and v == on) - t
                for t, on in flips[d][:-1]]
        assert len(late) >= 25
        bound = PERIOD_MS + d
        assert sum(x <= bound + SCHED_SLACK_MS for x in late) >= 0.95 * len(late), (d, late)
        assert max(late) < bound + LOST_POLL_MS, (d, late)


def test_timeout_is_the_configured_one_not_a_timer_tick(unit):
    """A 150 ms unit with a 40 ms timeout: every request times out, none sooner than 40 ms
    (with pysnmp's default 100 ms tick a request expired 1-100 ms after it was sent)."""
    u = unit({"delay_ms": 150}, timeout_s=0.04)
    u.run_until(lambda u: u.poller.stats()["timeouts"] >= 10)
    st = u.poller.stats()
    assert st["responses"] == 0 and st["timeouts"] == st["polls"]
    assert st["timeout_after_ms"]["min"] >= 40, st["timeout_after_ms"]
    assert [r.kind for r in u.reports] == [core.STALE]     # once per outage


# -- optional objects, SNMPv1 ------------------------------------------------------------

@pytest.mark.parametrize("version", ["v1", "v2c"])
def test_unit_without_reported_alarms_still_delivers_presence_volume_and_alarms(unit, version):
    u = unit({"columns_off": {"reported_alarms"}}, version=version, slow_s=0.3)
    u.emu.alarms[2] = 0x02                             # max presence
    with u.emu.lock:
        u.emu.presence[5] = True
    u.run_until(lambda u: u.poller.stats()["volume_reports"] >= 1 and u.of(core.STATUS)
                and u.of(core.PRESENCE))
    assert u.of(core.STALE) == []
    status = u.of(core.STATUS)[-1]
    assert status.faults == {d: (0x02 << ALARM_SHIFT if d == 2 else 0) for d in range(1, 9)}
    assert u.of(core.PRESENCE)[-1].presence == {d: d == 5 for d in range(1, 9)}
    counts = u.of(core.COUNTS)[-1]
    assert sorted(counts.counts) == list(range(1, 9)) and counts.interval_ms == 1000
    st = u.poller.stats()
    # Counted per object, asked once, never again.
    assert st["objects"]["vehicleDetectorReportedAlarms.4"]["absent"] == 1
    assert st["absent"] == 8
    assert st["v1_splits"] == (8 if version == "v1" else 0)


def test_unit_without_any_alarm_object_keeps_presence_and_counts(unit):
    u = unit({"columns_off": {"alarms", "reported_alarms"}}, slow_s=0.3)
    u.run_until(lambda u: u.poller.stats()["volume_reports"] >= 1)
    assert u.of(core.STALE) == [] and u.of(core.STATUS) == []
    assert len(u.of(core.PRESENCE)) >= 5 and u.poller.stats()["absent"] == 16


def test_v1_unit_with_8_detectors_mapped_as_16_keeps_detectors_1_to_8(unit):
    u = unit({"detectors": 8}, version="v1", detectors={d: d for d in range(1, 17)})
    with u.emu.lock:
        u.emu.presence[8] = True
    u.run_until(u.responses(20))
    assert u.lines() == [
        "ntcip unit uses SNMP v1: its community string travels in clear text "
        "(prefer v3 with SHA-2 and AES)",
        "ntcip discovery: detectors 9-16 are mapped but the unit has maxVehicleDetectors 8: "
        "they will stay STALE",
        "ntcip discovery: the mapping needs 2 vehicle detector status groups, the unit has "
        "maxVehicleDetectorStatusGroups 1",
        "ntcip discovery: activeVolumeOccupancyDetectors is 8: detectors above it have no "
        "volume/occupancy"]
    stale = u.of(core.STALE)
    assert [r.channels for r in stale] == [list(range(9, 17))]
    pres = u.of(core.PRESENCE)
    assert len(pres) >= 15 and all(r.presence == {d: d == 8 for d in range(1, 9)} for r in pres)
    assert u.poller.stats()["timeouts"] == 0 and u.poller.stats()["error_status"] == 0


def test_v1_request_is_split_around_a_missing_object(unit):
    """Without discovery's help (the unit does not list what it lacks), noSuchName on one
    status group costs that group's detectors, not the whole poll."""
    u = unit({"detectors": 16}, version="v1", detectors={d: d for d in range(1, 17)})
    u.run_until(u.responses(3))
    u.emu.columns_off = set()
    with u.emu.lock:
        u.emu.presence[1] = True
    from drivers.ntcip_objects import status_group, COL_GROUP_ACTIVE
    u.emu.garbage = {}
    # Group 2 disappears at run time (a card pulled from the rack).
    orig = u.emu.objects

    def without_group_2():
        o = orig()
        o.pop(status_group(COL_GROUP_ACTIVE, 2))
        return o
    u.emu.objects = without_group_2
    n = len(u.reports)
    u.run_until(lambda u: any(r.kind == core.STALE for r in u.reports[n:])
                and u.poller.stats()["responses"] >= 15)
    st = u.poller.stats()
    assert st["v1_splits"] == 1 and st["objects"]["vehicleDetectorStatusGroupActive.2"] == {
        "oid": "1.3.6.1.4.1.1206.4.2.1.2.4.1.2.2", "absent": 1, "wrong_type": 0,
        "bad_value": 0, "error_status": 0, "last": "noSuchName"}
    assert [r.channels for r in u.of(core.STALE)] == [list(range(9, 17))]
    assert u.of(core.PRESENCE)[-1].presence == {d: d == 1 for d in range(1, 9)}


# -- SNMPv3, SETs, pedestrian objects ------------------------------------------------------

def test_v3_auth_priv_sha256_aes128_polls_and_sets(unit):
    u = unit({"v3_user": "edge", "v3_auth_key": "auth-pass-1", "v3_priv_key": "priv-pass-1",
              "delay_ms": 20}, set={"no_activity_min": {"3": 7}, "volume_period_s": 2}, **V3)
    with u.emu.lock:
        u.emu.presence[3] = True
    u.run_until(lambda u: len(u.poller.stats()["set"]) == 2 and u.of(core.PRESENCE))
    assert u.of(core.PRESENCE)[-1].presence == {d: d == 3 for d in range(1, 9)}
    st = u.poller.stats()
    assert st["set"] == {
        "no_activity_min": {"asked": {"vehicleDetectorNoActivity.3": 7},
                            "read_back": {"vehicleDetectorNoActivity.3": 7}, "result": "applied"},
        "volume_period_s": {"asked": {"volumeOccupancyPeriod": 2},
                            "read_back": {"volumeOccupancyPeriod": 2}, "result": "applied"}}
    assert u.emu.vo_period_ms == 2000 and u.emu.thresholds == {("v", 9, 3): 7}
    assert "ntcip unit uses SNMP" not in " ".join(u.lines())


def test_v3_with_the_wrong_privacy_key_gets_no_data(unit):
    u = unit({"v3_user": "edge", "v3_auth_key": "auth-pass-1", "v3_priv_key": "other-pass"},
             **V3)
    u.run_until(lambda u: u.poller.stats()["errors"] >= 5)
    assert u.poller.stats()["responses"] == 0
    assert [r.kind for r in u.reports] == [core.STALE]


@pytest.mark.parametrize("version,refusal", [("v2c", "notWritable"), ("v1", "noSuchName")])
def test_set_refused_by_the_unit_is_reported_with_the_object(unit, version, refusal):
    u = unit({"detectors": 2, "read_only": True}, version=version, detectors={1: 1, 2: 2},
             set={"erratic_counts": 40})
    u.run_until(lambda u: u.poller.stats()["set"])
    assert u.poller.stats()["set"] == {"erratic_counts": {
        "asked": {"vehicleDetectorErraticCounts.1": 40, "vehicleDetectorErraticCounts.2": 40},
        "read_back": {"vehicleDetectorErraticCounts.1": 0, "vehicleDetectorErraticCounts.2": 0},
        "result": "refused: %s at vehicleDetectorErraticCounts.1" % refusal}}
    assert "ntcip set erratic_counts: refused: %s at vehicleDetectorErraticCounts.1" % refusal \
        in u.lines()
    assert u.emu.thresholds == {} and u.emu.served["sets_refused"] == 1


def test_pedestrian_detectors_come_from_the_pedestrian_objects_when_the_unit_has_them(unit):
    u = unit({"ped_detectors": 4}, detectors={1: 1}, ped_detectors={2: 5})
    with u.emu.lock:
        u.emu.ped_presence[2] = True
        u.emu.presence[2] = False          # the vehicle detector 2 object says otherwise
    u.emu.ped_alarms[2] = 0x01
    u.run_until(lambda u: u.of(core.PRESENCE, ped=True) and u.of(core.STATUS, ped=True))
    assert u.poller.ped_mode == "pedestrian"
    assert u.of(core.PRESENCE, ped=True)[-1].presence == {5: True}
    assert u.of(core.STATUS, ped=True)[-1].faults == {5: 0x01 << ALARM_SHIFT}


def test_pedestrian_detectors_fall_back_to_vehicle_objects_without_them(unit):
    u = unit({"ped_detectors": 0}, detectors={1: 1}, ped_detectors={2: 5})
    with u.emu.lock:
        u.emu.presence[2] = True
    u.run_until(lambda u: u.of(core.PRESENCE, ped=True))
    assert u.poller.ped_mode == "vehicle"
    assert u.of(core.PRESENCE, ped=True)[-1].presence == {5: True}


# -- configuration --------------------------------------------------------------------------

def test_unknown_and_invalid_keys_are_refused_all_at_once():
    with pytest.raises(NtcipConfigError) as e:
        parse_ntcip({"host": "10.0.0.5", "comunity": "x", "timeout_s": 0.001, "retries": 9,
                     "version": "v3", "user": "edge", "auth_key": "short",
                     "priv_protocol": "DES", "priv_key": "long-enough", "community": "public",
                     "set": {"volume_period": 1}})
    assert e.value.errors == [
        "ntcip 10.0.0.5: unknown key 'comunity' (known: type, host, port, source, version, "
        "community, user, auth_protocol, auth_key, priv_protocol, priv_key, detectors, "
        "ped_detectors, ped_objects, period_s, slow_s, timeout_s, retries, set)",
        "ntcip 10.0.0.5.community: not used by SNMPv3 (give user, auth_* and priv_*)",
        "ntcip 10.0.0.5.priv_protocol: 'DES' is not one of AES-128, AES-192, AES-256",
        "ntcip 10.0.0.5.auth_key: SNMPv3 authPriv needs a pass phrase of at least 8 characters "
        "(RFC 3414)",
        "ntcip 10.0.0.5.timeout_s: 0.001 is outside 0.02..10.0",
        "ntcip 10.0.0.5.retries: 9 is outside 0..5",
        "ntcip 10.0.0.5.set.volume_period: unknown key (known: volume_period_s, "
        "no_activity_min, max_presence_min, erratic_counts)"]


def test_v1_config_refuses_v3_keys_and_defaults_are_stated():
    with pytest.raises(NtcipConfigError) as e:
        parse_ntcip({"host": "h", "version": "v1", "auth_key": "whatever-1"})
    assert e.value.errors == ["ntcip h.auth_key: only for version v3 (this unit is v1)"]
    c = parse_ntcip({"host": "h"})
    assert (c.version, c.community, c.port, c.timeout_s, c.retries, c.period_s, c.slow_s) == \
        ("v2c", "public", 161, 0.3, 0, 0.1, 1.0)


def test_run_config_with_a_typo_is_a_setup_error():
    from tools.cmd_run import SetupError, make_sources
    with pytest.raises(SetupError, match="unknown key 'timout_s'"):
        make_sources([{"type": "ntcip", "host": "127.0.0.1", "timout_s": 0.2}], {})


# -- the emulator is as strict as a device --------------------------------------------------

def ask(emu, version, *calls):
    """Run session calls [(method, args)] against emu in one event loop; returns Responses."""
    import asyncio
    from drivers.ntcip_session import SnmpSession

    async def go():
        s = SnmpSession(parse_ntcip({"host": "127.0.0.1", "port": emu.port, "version": version,
                                     "timeout_s": 1.0}), monotonic_ms)
        await s.open()
        try:
            return [await getattr(s, m)(*args) for m, args in calls]
        finally:
            s.close()
    return asyncio.run(go())


@pytest.fixture
def emu():
    e = NtcipEmulator(detectors=2, columns_off={"reported_alarms"})
    e.start()
    yield e
    e.stop()


def test_emulator_tells_no_such_object_from_no_such_instance_and_serves_the_system_group(emu):
    from drivers.ntcip_objects import (SYS_DESCR, SYS_UPTIME, vehicle_detector, COL_ALARMS,
                                       COL_REPORTED_ALARMS)
    (r,) = ask(emu, "v2c", ("get", ([SYS_DESCR, SYS_UPTIME, vehicle_detector(COL_ALARMS, 2),
                                     vehicle_detector(COL_ALARMS, 3),
                                     vehicle_detector(COL_REPORTED_ALARMS, 1)],)))
    got = {o: type(v).__name__ for o, v in r.values.items()}
    assert r.error is None and bytes(r.values[SYS_DESCR]).startswith(b"edge-agent NTCIP 1202")
    assert [got[o] for o in (SYS_UPTIME, vehicle_detector(COL_ALARMS, 2),
                             vehicle_detector(COL_ALARMS, 3),
                             vehicle_detector(COL_REPORTED_ALARMS, 1))] == \
        ["TimeTicks", "Integer", "NoSuchInstance", "NoSuchObject"]


def test_emulator_v1_errors_follow_rfc_1157(emu):
    """Raw v1 datagrams (pysnmp's manager rewrites v1 errors into v2 exceptions)."""
    import socket
    from pyasn1.codec.ber import decoder, encoder
    from pysnmp.proto import api
    from drivers.ntcip_objects import vehicle_detector, COL_ALARMS, COL_REPORTED_ALARMS
    v1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]
    a, b = vehicle_detector(COL_ALARMS, 1), vehicle_detector(COL_REPORTED_ALARMS, 1)
    pdu = v1.GetRequestPDU()
    v1.apiPDU.set_defaults(pdu)
    v1.apiPDU.set_varbinds(pdu, [(a, v1.Null("")), (b, v1.Null(""))])
    msg = v1.Message()
    v1.apiMessage.set_defaults(msg)
    v1.apiMessage.set_community(msg, "public")
    v1.apiMessage.set_pdu(msg, pdu)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(encoder.encode(msg), ("127.0.0.1", emu.port))
        rsp, _ = decoder.decode(sock.recv(65535), asn1Spec=v1.Message())
    rpdu = v1.apiMessage.get_pdu(rsp)
    # noSuchName at the second varbind; the varbinds are the request's, unchanged.
    assert (int(v1.apiPDU.get_error_status(rpdu)), int(v1.apiPDU.get_error_index(rpdu))) == (2, 2)
    assert [(tuple(o), type(v).__name__) for o, v in v1.apiPDU.get_varbinds(rpdu)] == \
        [(a, "Null"), (b, "Null")]


def test_emulator_getbulk_ends_in_end_of_mib_view_and_sets_are_all_or_nothing(emu):
    from drivers.ntcip_objects import (vehicle_detector, volume_occupancy, COL_NO_ACTIVITY,
                                       COL_OCCUPANCY, COL_ALARMS)
    last = volume_occupancy(COL_OCCUPANCY, 2)
    bulk, bad_set, good_set, refused = ask(
        emu, "v2c", ("bulk", ([volume_occupancy(COL_OCCUPANCY, 1)], 5)),
        ("set", ([(vehicle_detector(COL_NO_ACTIVITY, 1), 5),
                  (vehicle_detector(COL_NO_ACTIVITY, 2), 300)],)),
        ("set", ([(vehicle_detector(COL_NO_ACTIVITY, 1), 5)],)),
        ("set", ([(vehicle_detector(COL_ALARMS, 1), 1)],)))
    assert bulk.error is None
    assert [(o, type(v).__name__) for o, v in bulk.binds] == [(last, "Integer"),
                                                               (last, "EndOfMibView")]
    assert (bad_set.error, bad_set.index) == ("wrongValue", 2)
    assert good_set.error is None and emu.thresholds == {("v", COL_NO_ACTIVITY, 1): 5}
    assert (refused.error, refused.index) == ("notWritable", 1)


def test_set_leaves_out_detectors_beyond_the_unit_and_names_them(unit):
    u = unit({"detectors": 2}, detectors={1: 1, 2: 2, 3: 3}, set={"max_presence_min": 4})
    u.run_until(lambda u: u.poller.stats()["set"])
    assert u.poller.stats()["set"]["max_presence_min"] == {
        "asked": {"vehicleDetectorMaxPresence.1": 4, "vehicleDetectorMaxPresence.2": 4},
        "read_back": {"vehicleDetectorMaxPresence.1": 4, "vehicleDetectorMaxPresence.2": 4},
        "result": "applied"}
    assert "ntcip set max_presence_min: not on the unit: vehicleDetectorMaxPresence.3" \
        in u.lines()


def test_per_object_errors_reach_the_run_log_each_window(unit):
    from drivers.ntcip_objects import status_group, COL_GROUP_ACTIVE
    NtcipDetectorPoller.summary_s = 0.5
    try:
        u = unit({"detectors": 16, "wrong_type": {status_group(COL_GROUP_ACTIVE, 2)}},
                 detectors={d: d for d in range(1, 17)})
        u.run_until(lambda u: any(m == "ntcip object errors" for _, m, _ in u.log))
    finally:
        NtcipDetectorPoller.summary_s = 60.0
    first = [(lv, m, f["object"], f["detail"]) for lv, m, f in u.log if m == "ntcip object wrong type"]
    assert first == [("warning", "ntcip object wrong type", "vehicleDetectorStatusGroupActive.2",
                      "OctetString, not an INTEGER")]
    (summary,) = [f for _, m, f in u.log if m == "ntcip object errors"][:1]
    assert list(summary["objects"]) == ["vehicleDetectorStatusGroupActive.2"]
    got = summary["objects"]["vehicleDetectorStatusGroupActive.2"]
    assert got["oid"] == "1.3.6.1.4.1.1206.4.2.1.2.4.1.2.2" and got["wrong_type"] >= 3
    assert [r.channels for r in u.of(core.STALE)] == [list(range(9, 17))]


def test_a_host_that_does_not_resolve_is_logged_and_its_detectors_are_stale():
    log = []
    p = NtcipDetectorPoller("no-such-host.invalid", 161, detectors={1: 1},
                            log=lambda level, msg, **f: log.append((level, msg)))
    p.start()
    deadline = time.monotonic() + 10.0
    while not p.stats()["driver_errors"] and time.monotonic() < deadline:
        time.sleep(0.02)
    p.stop()
    assert ("error", "ntcip unit cannot be opened") in log
    assert [(r.kind, r.channels) for r in p.reports()] == [(core.STALE, [1])]


def test_emulator_delay_and_jitter_shape_the_round_trips(unit):
    u = unit({"delay_ms": 10, "jitter_ms": 30})
    u.run_until(u.responses(25))
    rtt = sorted(u.poller.rtt)
    assert rtt[0] >= 10 and rtt[-1] - rtt[0] >= 10, rtt
