"""The site's time zone, device id and detector functions (what ATSPM's tables need)."""

try:
    from tests.portable.sheets import two_phase_site
except ImportError:
    from sheets import two_phase_site
from edge_agent.intersection import parse_site
from edge_agent.validate import ConfigError


def errors_of(site):
    try:
        parse_site(site)
    except ConfigError as e:
        return e.errors
    return []


def test_zone_device_id_and_functions_default_to_utc_the_intersection_and_presence():
    site = two_phase_site(ped2=True)
    site["fallback_plan"]["phases"][0]["walk"] = 7.0
    site["fallback_plan"]["phases"][0]["ped_clear"] = 10.0
    s = parse_site(site)
    assert s.time_zone == "UTC"
    assert s.device_id == s.intersection
    assert [d.functions for d in s.detectors] == [("Presence",), ("Presence",)]
    assert [d.functions for d in s.ped_detectors] == [("Ped",)]


def test_zone_device_id_and_functions_are_read():
    site = two_phase_site()
    site["time_zone"] = "America/Indiana/Indianapolis"
    site["device_id"] = "1136"
    site["detectors"][0]["function"] = ["Presence", "Yellow_Red"]
    site["detectors"][1]["function"] = "Advance"
    s = parse_site(site)
    assert (s.time_zone, s.device_id) == ("America/Indiana/Indianapolis", "1136")
    assert [d.functions for d in s.detectors] == [("Presence", "Yellow_Red"), ("Advance",)]


def test_a_bad_zone_or_function_is_reported_with_its_path():
    site = two_phase_site()
    site["time_zone"] = "America/New York"
    site["detectors"][0]["function"] = "Stopbar"
    site["detectors"][1]["function"] = []
    assert errors_of(site) == [
        "site.time_zone: 'America/New York' is not an IANA time zone name like \"America/Chicago\"",
        "detectors[0].function: 'Stopbar' is not one of Presence, Advance, Yellow_Red, stop bar count",
        "detectors[1].function: is an empty list: name at least one of Presence, Advance, "
        "Yellow_Red, stop bar count"]
