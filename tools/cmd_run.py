"""`edge-agent run`: the agent in real time with its drivers, MQTT link and outputs.

    edge-agent run --config site.json --provision provision.json \\
        --detectors sim:suburban --console --log-json

`--config` is a site file (edge_agent.intersection), or an object
{"site": {...}, "link": {...}, "runtime": {...}, "detectors": [...], "cabinet": {...}}
that adds link supervision times, loop settings, detector drivers and the TS2
cabinet's wiring (drivers/cabinet.py, docs/cabinet.md). The provisioning
file gives the keys, the store directory, and the "mqtt" section (brokers,
site, credentials, TLS); see docs/protocols/mqtt.md. SIGTERM or SIGINT ends
the run cleanly: the step finishes, state goes offline, events are flushed.
"""

import json
import os
import signal
import sys

from drivers.keys import KeyFileError, ed25519_verify, load_provisioning
from drivers.localtime import site_zone
from drivers.runlog import RunLog
from drivers.runtime import Runtime, RuntimeConfig
from edge_agent.intersection import parse_site
from edge_agent.supervisor import LinkPolicy
from edge_agent.validate import ConfigError


class SetupError(Exception):
    """A configuration problem, printed as one message (exit status 2)."""


def register(sub):
    p = sub.add_parser("run", help="run the agent in real time (drivers, MQTT link, outputs)")
    p.add_argument("--config", required=True, help="site JSON file (or {site, link, runtime, detectors})")
    p.add_argument("--provision", required=True, help="provisioning file (keys, store_dir, mqtt)")
    p.add_argument("--detectors", action="append", default=[], metavar="SPEC",
                   help="detector source: sim:<scenario>[:seed]; repeatable; adds to the config's")
    p.add_argument("--cabinet", metavar="PORT",
                   help="drive a TS2 Type 1 cabinet on this serial port (docs/cabinet.md); "
                        "the config's \"cabinet\" object gives its wiring")
    p.add_argument("--no-mqtt", action="store_true", help="run without the central link (local only)")
    p.add_argument("--console", action="store_true", help="show the signal heads on the terminal")
    p.add_argument("--log-json", action="store_true", help="structured logs as JSON lines")
    p.add_argument("--log-file", metavar="PATH",
                   help="write logs to this file, rotated at 5 MB, 5 kept (default: stderr, "
                        "which systemd sends to the journal)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--control-socket", metavar="PATH",
                   help="the local command socket (default: control.sock in the store directory)")
    p.add_argument("--reset-input", metavar="FILE",
                   help="the cabinet's hardwired flash-reset input as a GPIO value file (0/1)")
    p.add_argument("--panel", metavar="ADDR:PORT", nargs="?", const="127.0.0.1:8080",
                   help="serve the local front panel (default 127.0.0.1:8080; password from "
                        "the provisioning file's panel.password_hash)")
    p.add_argument("--allow-fault-injection", action="store_true",
                   help="HIL rigs only: accept 'trip' on the local socket to latch a test fault")
    p.set_defaults(func=cmd_run)


def load_config(path):
    """(site dict, options dict) from a site file or a wrapper object."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise SetupError("config %s: cannot read (%s)" % (path, e.strerror or e))
    except ValueError as e:
        raise SetupError("config %s: not valid JSON (%s)" % (path, e))
    if isinstance(doc, dict) and "site" in doc:
        unknown = sorted(set(doc) - {"site", "link", "runtime", "detectors", "cabinet"})
        if unknown:
            raise SetupError("config %s: unknown key %r" % (path, unknown[0]))
        return doc["site"], doc
    return doc, {}


def link_policy(d):
    """LinkPolicy from {"loss_s", "stable_s", "holdover_s"} (seconds)."""
    d = d or {}
    try:
        return LinkPolicy(loss_ms=int(float(d.get("loss_s", 3)) * 1000),
                          holdover_ms=int(float(d.get("holdover_s", 0)) * 1000),
                          stable_ms=int(float(d.get("stable_s", 10)) * 1000))
    except (TypeError, ValueError):
        raise SetupError("link: loss_s, stable_s and holdover_s must be numbers of seconds")


def make_sources(specs, site_dict, log=None):
    """Detector sources from "sim:<scenario>[:seed]" strings and config objects."""
    sources = []
    for spec in specs:
        if isinstance(spec, str):
            kind, _, rest = spec.partition(":")
            if kind != "sim" or not rest:
                raise SetupError("--detectors %r: expected sim:<scenario>[:seed]" % spec)
            name, _, seed = rest.partition(":")
            spec = {"type": "sim", "scenario": name}
            if seed:
                spec["seed"] = int(seed)
        kind = spec.get("type")
        if kind == "sim":
            from hil.sim_source import SimSource
            src = SimSource(spec["scenario"], spec.get("seed"))
            if src.site.get("intersection") != site_dict.get("intersection"):
                raise SetupError("scenario %r simulates intersection %r, the config is %r"
                                 % (spec["scenario"], src.site.get("intersection"),
                                    site_dict.get("intersection")))
            sources.append(src)
        elif kind == "serial":
            from drivers.sources import SerialSource
            sources.append(SerialSource(spec))
        elif kind == "ntcip":
            from drivers.sources import NtcipSource
            try:
                sources.append(NtcipSource(spec, log=log))
            except ValueError as e:
                raise SetupError("detectors: %s" % e)
        else:
            raise SetupError("detectors: unknown source type %r (sim, serial, ntcip)" % (kind,))
    return sources


def make_cabinet(spec, port, log, site=None):
    """The cabinet driver from the config's "cabinet" object and/or --cabinet PORT, or None."""
    if spec is None and port is None:
        return None
    if spec is not None and not isinstance(spec, dict):
        raise SetupError("config: \"cabinet\" must be an object (docs/cabinet.md)")
    spec = dict(spec or {})
    if port is not None:
        spec["port"] = port
    from drivers.cabinet import CabinetDriver
    try:
        return CabinetDriver(spec, site, log=log)
    except ValueError as e:
        raise SetupError("config %s:\n  %s" % ("cabinet", e))



def parse_panel(spec):
    """(host, port) from "ADDR:PORT" (port 0: a free one), or None."""
    if not spec:
        return None
    host, _, port = spec.rpartition(":")
    try:
        port = int(port)
    except ValueError:
        port = -1
    if not host or not 0 <= port <= 65535:
        raise SetupError("--panel %r: expected ADDR:PORT, e.g. 127.0.0.1:8080" % spec)
    return host, port


def build_runtime(config, provision, detectors=(), mqtt=True, console=False, log=None,
                  config_overrides=None, control_socket=None, reset_input=None,
                  allow_trip=False, panel=None, cabinet=None):
    """The Runtime for a config file and a provisioning file (also used by tests and benches)."""
    site_dict, opts = load_config(config)
    if config_overrides:
        opts = dict(opts, **config_overrides)
    try:
        site = parse_site(site_dict)
    except ConfigError as e:
        raise SetupError("site %s is invalid:\n  %s" % (config, "\n  ".join(e.errors)))
    try:
        site_zone(site.time_zone)
    except ValueError as e:
        raise SetupError("site %s: %s" % (config, e))
    try:
        prov = load_provisioning(provision)
    except KeyFileError as e:
        raise SetupError(str(e))
    rt_opts = opts.get("runtime") or {}
    cfg = RuntimeConfig(step_ms=int(rt_opts.get("step_ms", 100)),
                        telemetry_s=float(rt_opts.get("telemetry_s", 1.0)),
                        policy=link_policy(opts.get("link")),
                        events_capacity=int(rt_opts.get("events_capacity", 200_000)),
                        lateness_file=rt_opts.get("lateness_file"),
                        control_socket=control_socket or os.path.join(prov.store_dir,
                                                                      "control.sock"),
                        allow_trip=allow_trip, panel=parse_panel(panel),
                        panel_password_hash=(prov.raw.get("panel") or {}).get("password_hash"),
                        history_days=int(rt_opts.get("history_days", 7)),
                        history_max_bytes=int(float(rt_opts.get("history_max_mb", 512)) * (1 << 20)))
    link_cfg = None
    if mqtt:
        from drivers.mqtt_link import parse_link_config
        section = prov.raw.get("mqtt")
        if section is None:
            raise SetupError("provisioning %s: no \"mqtt\" section (or run with --no-mqtt)"
                             % provision)
        try:
            link_cfg = parse_link_config(section, os.path.dirname(os.path.abspath(provision)))
        except ValueError as e:
            raise SetupError("provisioning %s:\n  %s" % (provision, e))
    sources = make_sources(list(opts.get("detectors") or []) + list(detectors), site_dict,
                           log=log)
    if reset_input:
        from drivers.reset_input import ResetInput
        sources.append(ResetInput(reset_input))
    cab = make_cabinet(opts.get("cabinet"), cabinet, log, site)
    if cab is not None:
        sources.append(cab)
    outputs = [s for s in sources if hasattr(s, "write")]
    from drivers.watchdog import Watchdog
    watchdog = Watchdog.from_env()          # under systemd (Type=notify, WatchdogSec=)
    if watchdog is not None:
        outputs.append(watchdog)
    if console:
        from tools.console_view import ConsoleView
        outputs.append(ConsoleView(site))
    return Runtime(site, prov, link_cfg, sources, outputs, cfg, log=log,
                   ed25519_verify=ed25519_verify)


def cmd_run(args):
    stream = sys.stderr
    if args.log_file:
        from drivers.logfile import RotatingFile
        try:
            stream = RotatingFile(args.log_file)
        except OSError as e:
            print("edge-agent run: log file %s: %s" % (args.log_file, e.strerror or e),
                  file=sys.stderr)
            return 2
    log = RunLog(stream, json_lines=args.log_json, level=args.log_level)
    try:
        rt = build_runtime(args.config, args.provision, args.detectors, not args.no_mqtt,
                           args.console, log, control_socket=args.control_socket,
                           reset_input=args.reset_input, allow_trip=args.allow_fault_injection,
                           panel=args.panel, cabinet=args.cabinet)
    except SetupError as e:
        log.close()
        print("edge-agent run: %s" % e, file=sys.stderr)
        return 2

    def stop(signum, frame):
        rt.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.seconds is not None:
        signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, args.seconds)
    try:
        rt.run()
    finally:
        log.close()
    return 0
