"""Finding 5: a command id near 2^53 locked out every later command, and `central cmd`
printed "sent" without the agent's refusal. Command ids now have the plans' jump limit,
and the agent's verdict travels back on cmd/result to `central cmd`."""

import json
import time

from drivers.commands import CommandVerifier, command_body, sign_command
from tests.linkrig import INTERSECTION, KID, SECRET, SITE, AgentUnderTest
from tools.cli import main

WALL = 1_790_000_000


def cmd(cid, name="resend_state"):
    return sign_command(command_body(INTERSECTION, cid, name, WALL), KID,
                        bytes.fromhex(SECRET)).encode()


def test_a_command_id_far_above_the_last_is_refused_as_a_jump():
    v = CommandVerifier(INTERSECTION, {KID: ("hmac", bytes.fromhex(SECRET))}, max_id_jump=1000)
    res = v.check(cmd(2 ** 53 - 1), 17, WALL)
    assert not res.ok and res.reason == "id_jump"
    assert "at most 1000 allowed" in res.message
    assert v.check(cmd(1017), 17, WALL).ok            # exactly the limit is fine
    assert v.check(cmd(1018), 17, WALL).reason == "id_jump"


def test_the_first_command_is_bounded_from_zero():
    v = CommandVerifier(INTERSECTION, {KID: ("hmac", bytes.fromhex(SECRET))}, max_id_jump=1000)
    assert v.check(cmd(2 ** 53 - 1), None, WALL).reason == "id_jump"
    assert v.check(cmd(1000), None, WALL).ok


def run_cmd(broker, key, cid, capsys, name="resend_state"):
    code = main(["central", "cmd", "--site-id", SITE, "--broker", "127.0.0.1:%d" % broker.port,
                 "--intersection", INTERSECTION, "--key", str(key), "--id", str(cid),
                 "--command", name, "--wait", "10"])
    return code, capsys.readouterr().out


def test_central_cmd_prints_the_refusal_and_later_commands_still_work(tmp_path, broker, capsys):
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"kid": KID, "scheme": "hmac", "secret": SECRET}))
    agent = AgentUnderTest(tmp_path / "agent", [(broker.host, broker.port)]).start()
    try:
        deadline = time.monotonic() + 15           # commands are not retained: subscribed first
        while not agent.rt.link.subscribed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert agent.rt.link.subscribed
        code, out = run_cmd(broker, key, 5, capsys)
        assert code == 0 and "accepted: resend_state (id 5)" in out, out
        code, out = run_cmd(broker, key, 2 ** 53 - 1, capsys)
        assert code == 1, out
        assert "refused: id_jump: command id 9007199254740991 is 9007199254740986 above " \
               "the last accepted id 5 (at most 1000 allowed)" in out, out
        code, out = run_cmd(broker, key, 5, capsys)
        assert code == 1 and "refused: replay: command id 5 is not above 5" in out, out
        code, out = run_cmd(broker, key, 6, capsys)      # not locked out
        assert code == 0 and "accepted: resend_state (id 6)" in out, out
    finally:
        agent.stop()
