"""Fixtures shared by the link tests: a real Mosquitto per test, on 127.0.0.1 and a free port."""

import pytest

from hil.broker import Broker, mosquitto_binary


@pytest.fixture
def broker(tmp_path):
    """A broker of this test's own (config in tmp_path), started and stopped by pid."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (make .system-deps)")
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()
