"""The site's local time: its IANA zone turned into UTC offsets and local stamps.

The core cannot read the zone database (MicroPython has none), so the
runtime asks this module for the zone's UTC offset at each wall-clock reading
and passes it in (`Inputs.utc_offset_ms`): coordination counts from local
midnight, and a daylight-saving change reaches it as a one-hour jump of the
local clock, which it corrects like any other offset error (a transition).
Exports stamp events with local time and its offset, as a cabinet's log does.
"""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def site_zone(name):
    """The ZoneInfo of an IANA name; ValueError saying which name and why."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError("site.time_zone: %r is not a time zone in the zone database (%s)"
                         % (name, e)) from None


def utc_offset_ms(zone, utc_ms):
    """The zone's offset from UTC (ms, east positive) at the instant utc_ms."""
    # ZoneInfo.utcoffset(dt) reads dt as local wall time; convert the instant first.
    off = (_EPOCH + timedelta(milliseconds=utc_ms)).astimezone(zone).utcoffset()
    return int(off.total_seconds() * 1000)


def local_datetime(zone, utc_ms):
    """The aware local datetime of the instant utc_ms."""
    return (_EPOCH + timedelta(milliseconds=utc_ms)).astimezone(zone)


def local_stamp(zone, utc_ms):
    """'YYYY-MM-DD HH:MM:SS.mmm+HH:MM': local time with its offset, to the ms."""
    t = local_datetime(zone, utc_ms)
    off = t.utcoffset()
    mins = int(off.total_seconds()) // 60
    sign = "+" if mins >= 0 else "-"
    mins = abs(mins)
    return "%s.%03d%s%02d:%02d" % (t.strftime("%Y-%m-%d %H:%M:%S"), t.microsecond // 1000,
                                   sign, mins // 60, mins % 60)


def parse_local(text, zone):
    """A time given by a user, as unix ms: ISO 8601 with an offset, or local
    wall time in the zone ('2026-03-08 07:00'); ValueError if it is neither."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("%r is not a time like 2026-03-08T07:00 or 2026-03-08 07:00-05:00"
                         % (text,)) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=zone)
    return int(round((t - _EPOCH).total_seconds() * 1000))
