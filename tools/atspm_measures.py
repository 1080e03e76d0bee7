"""The performance measures, computed by ODOT's `atspm` package over an export.

    tables = run_atspm("out/events.csv", "out/detectors.csv")
    tables["terminations"], tables["phase_wait"], tables["timeline"], ...

Nothing here computes a measure: it reads the export (tools/export.py) with
TimeStamp as the site's local wall time, hands it to atspm's
SignalDataProcessor with the aggregations the report draws, and returns its
tables as pandas DataFrames. Bins are 15 minutes unless told otherwise.
"""

from tools.export import read_events_frame

# The measures the report draws, with atspm's documented parameters.
AGGREGATIONS = [
    {"name": "has_data", "params": {"no_data_min": 5, "min_data_points": 3}},
    {"name": "actuations", "params": {}},
    {"name": "arrival_on_green", "params": {"latency_offset_seconds": 0}},
    {"name": "split_failures", "params": {"red_time": 5, "red_occupancy_threshold": 0.80,
                                          "green_occupancy_threshold": 0.80,
                                          "by_approach": True}},
    {"name": "yellow_red", "params": {"latency_offset_seconds": 0}},
    # A rig run or a quiet night has long silences: no event-gap invalidation.
    {"name": "timeline", "params": {"min_duration": 0, "cushion_time": 1,
                                    "max_event_gap_seconds": None}},
    {"name": "ped", "params": {}},
    {"name": "ped_delay", "params": {}},
    {"name": "phase_wait", "params": {"preempt_recovery_seconds": 120,
                                      "assumed_cycle_length": 140, "skip_multiplier": 1.5,
                                      "tsp_skip_multiplier": 2.0}},
    {"name": "terminations", "params": {}},
]


def run_atspm(events_path, detectors_path, bin_size=15):
    """{measure name: DataFrame} from atspm over an exported events/detectors pair."""
    import pandas as pd
    from atspm import SignalDataProcessor
    events = read_events_frame(events_path)
    if detectors_path.endswith(".parquet"):
        detectors = pd.read_parquet(detectors_path)
    else:
        detectors = pd.read_csv(detectors_path, dtype={"DeviceId": str})
    events["DeviceId"] = events["DeviceId"].astype(str)
    detectors["DeviceId"] = detectors["DeviceId"].astype(str)
    with SignalDataProcessor(raw_data=events, detector_config=detectors, bin_size=bin_size,
                             verbose=0, aggregations=[dict(a) for a in AGGREGATIONS]) as p:
        p.load()
        p.aggregate()
        names = [a["name"] for a in AGGREGATIONS] + ["raw_data"]
        return {n: p.conn.query("SELECT * FROM %s" % n).df() for n in names}
