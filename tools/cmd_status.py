"""`edge-agent status <intersection>`: live state, plan, phases and link health on the terminal.

    edge-agent status demo-0001 --site-id springfield --broker 127.0.0.1:1883
    edge-agent status demo-0001 --site-id springfield --once     # one snapshot, then exit

Reads the retained `state` and `plan/reported` and the 1 Hz `telemetry`,
and redraws a small screen every second (or prints one snapshot).
"""

import sys
import threading
import time

from tools.mqtt_args import add_broker_arguments, connect, decode, topics


def register(sub):
    p = sub.add_parser("status", help="show an intersection's live state, plan, phases and link")
    p.add_argument("intersection")
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="with --once: wait this long for state and telemetry")
    add_broker_arguments(p)
    p.set_defaults(func=cmd_status)


def render(intersection, state, reported, tel, now=None):
    """The status screen as a list of lines."""
    now = time.time() if now is None else now
    lines = ["intersection %s" % intersection]
    if state is None:
        lines.append("state        (nothing retained: never connected?)")
    else:
        plan = state.get("plan") or {}
        online = "online" if state.get("online") else "OFFLINE"
        lines.append("state        %s  mode %s since %s  session %s  agent %s" % (
            online, state.get("mode", "?"), _ago(state.get("since"), now),
            state.get("session"), state.get("agent", "?")))
        lines.append("plan         %s version %s (%s)" % (plan.get("id"), plan.get("version"),
                                                          plan.get("source")))
    if reported:
        last = reported.get("last") or {}
        if last:
            lines.append("last plan    %s version %s%s" % (
                last.get("result"), last.get("version"),
                ": %s: %s" % (last.get("reason"), last.get("message")) if last.get("reason") else ""))
        if reported.get("pending"):
            lines.append("pending      %s (waits for the next safe point)" % reported["pending"])
    if tel:
        link = tel.get("link") or {}
        loop = tel.get("loop") or {}
        lines.append("link         %s, broker %s, heartbeat %s ms ago%s" % (
            "healthy" if link.get("healthy") else "DOWN",
            "connected" if link.get("connected") else "disconnected",
            link.get("heartbeat_age_ms"),
            ", plan hold %d s left" % (link["hold_left_ms"] // 1000) if link.get("hold_left_ms") else ""))
        lines.append("loop         late p50 %s p99 %s max %s ms, %s overruns   (telemetry %s)" % (
            loop.get("p50"), loop.get("p99"), loop.get("max"), loop.get("overruns"),
            _ago(tel.get("ts"), now)))
        lines.append("phase  veh ped  interval   elapsed  min  gap  max  call")
        for p, e in sorted((tel.get("phases") or {}).items(), key=lambda kv: int(kv[0])):
            lines.append("%5s  %3s %3s  %-9s %7s %4s %4s %4s  %s" % (
                p, e.get("veh", ""), e.get("ped", ""), e.get("interval", "red"),
                _s(e.get("elapsed_ms")), _s(e.get("min_left_ms")), _s(e.get("gap_left_ms")),
                _s(e.get("max_left_ms")), "C" if e.get("call") else ""))
        dets = tel.get("detectors") or {}
        bad = [d for d in dets.get("status") or [] if d.get("state") != "ok"]
        lines.append("detectors    %d reporting, %d not ok%s" % (
            len(dets.get("status") or []), len(bad),
            ": " + ", ".join("%s%s %s" % ("ped " if d.get("ped") else "", d.get("channel"),
                                          d.get("state")) for d in bad[:8]) if bad else ""))
    else:
        lines.append("telemetry    (none received yet)")
    return lines


def cmd_status(args):
    t = topics(args, args.intersection)
    latest = {}
    got = threading.Event()

    def on_message(client, userdata, msg):
        latest[msg.topic] = decode(msg.payload)
        if t.state in latest and (t.telemetry in latest or not args.once):
            got.set()

    c = connect(args, "status", on_message,
                [(t.state, 1), (t.plan_reported, 1), (t.telemetry, 0)])
    try:
        if args.once:
            got.wait(args.timeout)
            print("\n".join(render(args.intersection, latest.get(t.state),
                                   latest.get(t.plan_reported), latest.get(t.telemetry))))
            return 0 if t.state in latest else 1
        while True:
            screen = render(args.intersection, latest.get(t.state), latest.get(t.plan_reported),
                            latest.get(t.telemetry))
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")
            sys.stdout.write("\n".join(screen) + "\n")
            sys.stdout.flush()
            time.sleep(1.0)
    finally:
        c.loop_stop()
        c.disconnect()


def _s(ms):
    return "" if ms is None else "%.1f" % (ms / 1000)


def _ago(ts, now):
    if not isinstance(ts, (int, float)):
        return "?"
    return "%s (%.0f s ago)" % (time.strftime("%H:%M:%S", time.localtime(ts)), now - ts)
