"""`vanta bot --console`: the same bot in a terminal, no token, driven here by a script on stdin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port

pytestmark = pytest.mark.integration
VANTA = Path(sys.executable).with_name("vanta")


def test_console_chat_runs_the_real_handlers_without_a_token(
    empty_db_url: str, redis_server_url: str, tmp_path: Path
) -> None:
    script = "/start\n#3\n/alfa\nwhat is this\n/nope\n"
    env = {k: v for k, v in os.environ.items() if k != "TELEGRAM_BOT_TOKEN"}
    env.update(
        DATABASE_URL=empty_db_url,
        REDIS_URL=redis_server_url,
        VANTA_HOME=str(tmp_path),
        SERVING_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens: the AI service is down
    )
    done = subprocess.run(
        [str(VANTA), "bot", "--console", "--user-id", "4242"],
        input=script,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        start_new_session=True,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert "you are Telegram user 4242" in out
    assert "Vanta copies Avantis traders for you" in out and "#3 ❓ Help" in out
    assert "/copytrader — Create, edit or delete your copy profiles" in out  # #3 pressed Help
    assert "The AI service isn't answering right now" in out and "I won't guess" in out
    assert "I didn't understand that" in out
    assert "I don't know /nope" in out
    # Answers come in the order asked: the script waits for each before typing the next.
    assert out.index("you> #3") < out.index("What I can do") < out.index("you> /alfa")
