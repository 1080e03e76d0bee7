"""Detector drivers as runtime sources: `read(now_ms, inputs)` adds their reports to the step.

    SerialSource({"type": "serial", "port": "/dev/ttyUSB0", "source": "card0",
                  "channels": {"1": 1}, "ped_channels": {"9": 1}})
    NtcipSource({"type": "ntcip", "host": "10.0.0.5", "port": 161,
                 "detectors": {"1": 1}, "period_s": 0.1})

Both drivers stamp reports with the monotonic ms clock the runtime steps
with (`time.monotonic_ns() // 1e6`), run on threads of their own, and are
drained once per step.
"""


def _channel_map(d, what):
    if d is None:
        return None
    try:
        return {int(k): int(v) for k, v in d.items()}
    except (AttributeError, TypeError, ValueError):
        raise ValueError("%s: must map device channel to site channel, e.g. {\"1\": 1}" % what)


def preempt_inputs_into(inputs, taken):
    """Merge a driver's preempt_inputs() ({Inputs field: {preempt number: level}}) into the
    step's Inputs; a number left out keeps its last value in the core."""
    for field, levels in taken.items():
        merged = dict(getattr(inputs, field) or {})
        merged.update(levels)
        setattr(inputs, field, merged)


class _ReportSource:
    def __init__(self, driver, name):
        self.driver = driver
        self.name = name

    def start(self):
        self.driver.start()

    def stop(self):
        self.driver.stop()

    def read(self, now, inputs):
        reports = self.driver.reports()
        if reports:
            inputs.reports = (inputs.reports or []) + reports
        take = getattr(self.driver, "preempt_inputs", None)
        if take is not None:
            preempt_inputs_into(inputs, take())

    def stats(self):
        return self.driver.stats()


class SerialSource(_ReportSource):
    """A serial detector card (drivers.serial_detector)."""

    def __init__(self, spec):
        from drivers.serial_detector import SerialDetectorCard
        card = SerialDetectorCard(spec["port"], source=spec.get("source"),
                                  channels=_channel_map(spec.get("channels"), "channels"),
                                  ped_channels=_channel_map(spec.get("ped_channels"), "ped_channels"),
                                  baudrate=int(spec.get("baudrate", 115200)),
                                  preempts=_channel_map(spec.get("preempts"), "preempts"),
                                  advance_warnings=_channel_map(spec.get("advance_warnings"),
                                                                "advance_warnings"),
                                  gate_downs=_channel_map(spec.get("gate_downs"), "gate_downs"))
        super().__init__(card, "serial:%s" % card.source)


class NtcipSource(_ReportSource):
    """An NTCIP 1202 detector unit over SNMP (drivers.ntcip; keys in drivers.ntcip_config).
    An unknown or invalid key raises ValueError naming every problem; `log` is the run log."""

    def __init__(self, spec, log=None):
        from drivers.ntcip import NtcipDetectorPoller
        from drivers.ntcip_config import parse_ntcip
        unit = NtcipDetectorPoller(config=parse_ntcip(spec), log=log)
        super().__init__(unit, unit.source)
