"""NTCIP 1202 detector objects (and the MIB-II system group): OIDs, names, ranges.

Shared by the poller (drivers/ntcip.py) and the emulator (hil/ntcip_emulator.py);
docs/protocols/ntcip.md lists them with their use and which ones are optional.
"""

# NTCIP 1202 object identifiers.
ASC = (1, 3, 6, 1, 4, 1, 1206, 4, 2, 1)
DETECTOR = ASC + (2,)
MAX_VEHICLE_DETECTORS = DETECTOR + (1, 0)
VEHICLE_DETECTOR_TABLE = DETECTOR + (2, 1)          # .<column>.<detector>
COL_NO_ACTIVITY, COL_MAX_PRESENCE, COL_ERRATIC_COUNTS = 9, 10, 11
COL_FAIL_TIME, COL_ALARMS, COL_REPORTED_ALARMS, COL_RESET = 12, 13, 14, 15
MAX_STATUS_GROUPS = DETECTOR + (3, 0)
STATUS_GROUP_TABLE = DETECTOR + (4, 1)              # .<column>.<group>
COL_GROUP_NUMBER, COL_GROUP_ACTIVE, COL_GROUP_ALARMS = 1, 2, 3
VOLUME_OCCUPANCY_SEQUENCE = DETECTOR + (5, 1, 0)
VOLUME_OCCUPANCY_PERIOD = DETECTOR + (5, 2, 0)      # seconds
ACTIVE_VOLUME_OCCUPANCY_DETECTORS = DETECTOR + (5, 3, 0)
VOLUME_OCCUPANCY_TABLE = DETECTOR + (5, 4, 1)       # .<column>.<detector>
COL_VOLUME, COL_OCCUPANCY = 1, 2
# Pedestrian detectors: the table since 1202 v02, the status groups since v03.
MAX_PED_DETECTORS = DETECTOR + (6, 0)
PED_DETECTOR_TABLE = DETECTOR + (7, 1)              # .<column>.<ped detector>
COL_PED_NO_ACTIVITY, COL_PED_MAX_PRESENCE, COL_PED_ERRATIC_COUNTS = 3, 4, 5
COL_PED_ALARMS = 6
MAX_PED_STATUS_GROUPS = DETECTOR + (8, 0)
PED_STATUS_GROUP_TABLE = DETECTOR + (9, 1)          # .<column>.<group>

# MIB-II system group (RFC 1213), the first thing a technician asks a device.
SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_OBJECT_ID = (1, 3, 6, 1, 2, 1, 1, 2, 0)
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_NAME = (1, 3, 6, 1, 2, 1, 1, 5, 0)

# Diagnostic thresholds the operator may SET, per detector:
# (config key, vehicle column, pedestrian column, range).
THRESHOLDS = (("no_activity_min", COL_NO_ACTIVITY, COL_PED_NO_ACTIVITY, (0, 255)),
              ("max_presence_min", COL_MAX_PRESENCE, COL_PED_MAX_PRESENCE, (0, 255)),
              ("erratic_counts", COL_ERRATIC_COUNTS, COL_PED_ERRATIC_COUNTS, (0, 255)))


def vehicle_detector(column, det):
    return VEHICLE_DETECTOR_TABLE + (column, det)


def status_group(column, group):
    return STATUS_GROUP_TABLE + (column, group)


def volume_occupancy(column, det):
    return VOLUME_OCCUPANCY_TABLE + (column, det)


def ped_detector(column, det):
    return PED_DETECTOR_TABLE + (column, det)


def ped_status_group(column, group):
    return PED_STATUS_GROUP_TABLE + (column, group)


_SCALARS = {
    MAX_VEHICLE_DETECTORS: "maxVehicleDetectors", MAX_STATUS_GROUPS: "maxVehicleDetectorStatusGroups",
    VOLUME_OCCUPANCY_SEQUENCE: "volumeOccupancySequence",
    VOLUME_OCCUPANCY_PERIOD: "volumeOccupancyPeriod",
    ACTIVE_VOLUME_OCCUPANCY_DETECTORS: "activeVolumeOccupancyDetectors",
    MAX_PED_DETECTORS: "maxPedestrianDetectors", MAX_PED_STATUS_GROUPS: "maxPedestrianDetectorGroups",
    SYS_DESCR: "sysDescr", SYS_OBJECT_ID: "sysObjectID", SYS_UPTIME: "sysUpTime", SYS_NAME: "sysName",
}
_TABLES = (
    (VEHICLE_DETECTOR_TABLE, {COL_NO_ACTIVITY: "vehicleDetectorNoActivity",
                              COL_MAX_PRESENCE: "vehicleDetectorMaxPresence",
                              COL_ERRATIC_COUNTS: "vehicleDetectorErraticCounts",
                              COL_FAIL_TIME: "vehicleDetectorFailTime",
                              COL_ALARMS: "vehicleDetectorAlarms",
                              COL_REPORTED_ALARMS: "vehicleDetectorReportedAlarms",
                              COL_RESET: "vehicleDetectorReset"}),
    (STATUS_GROUP_TABLE, {COL_GROUP_NUMBER: "vehicleDetectorStatusGroupNumber",
                          COL_GROUP_ACTIVE: "vehicleDetectorStatusGroupActive",
                          COL_GROUP_ALARMS: "vehicleDetectorStatusGroupAlarms"}),
    (VOLUME_OCCUPANCY_TABLE, {COL_VOLUME: "detectorVolume", COL_OCCUPANCY: "detectorOccupancy"}),
    (PED_DETECTOR_TABLE, {COL_PED_NO_ACTIVITY: "pedestrianDetectorNoActivity",
                          COL_PED_MAX_PRESENCE: "pedestrianDetectorMaxPresence",
                          COL_PED_ERRATIC_COUNTS: "pedestrianDetectorErraticCounts",
                          COL_PED_ALARMS: "pedestrianDetectorAlarms"}),
    (PED_STATUS_GROUP_TABLE, {COL_GROUP_NUMBER: "pedestrianDetectorStatusGroupNumber",
                              COL_GROUP_ACTIVE: "pedestrianDetectorStatusGroupActive",
                              COL_GROUP_ALARMS: "pedestrianDetectorStatusGroupAlarms"}),
)


def dotted(oid):
    return ".".join(str(x) for x in oid)


def name_of(oid):
    """The MIB name of an OID with its instance ("vehicleDetectorAlarms.3"), or its dotted form."""
    oid = tuple(oid)
    if oid in _SCALARS:
        return _SCALARS[oid]
    for table, cols in _TABLES:
        if oid[:len(table)] == table and len(oid) == len(table) + 2 and oid[-2] in cols:
            return "%s.%d" % (cols[oid[-2]], oid[-1])
    return dotted(oid)
