"""`vanta bot --console`: talk to the bot in a terminal, without a token or Telegram.

The same `Application`, handlers, persistence and service run as in production; only the
transport differs. python-telegram-bot sends every Bot API call through a `BaseRequest`;
`ConsoleRequest` answers those calls from a terminal instead of from api.telegram.org: what you
type becomes the updates `getUpdates` returns, and what the bot sends is printed (charts are saved
as PNG files and their paths printed). Inline buttons are numbered; type `#2` to press the second
button of the latest message that has buttons.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text
from telegram.request import BaseRequest, RequestData

from bot.deps import BotDeps
from infra.runtime import Services

BOT_USER = {"id": 1, "is_bot": True, "first_name": "Vanta", "username": "vanta_console_bot"}
_STYLES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "code": "cyan",
    "pre": "cyan",
    "s": "strike",
    "a": "underline blue",
}


class _HtmlToRich(HTMLParser):
    """Telegram's HTML parse mode rendered as rich styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = Text()
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.styles.append(_STYLES.get(tag, ""))

    def handle_endtag(self, tag: str) -> None:
        if self.styles:
            self.styles.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data, style=" ".join(s for s in self.styles if s) or None)


def html_to_rich(markup: str, parse_mode: str | None) -> Text:
    if not parse_mode or parse_mode.upper() != "HTML":
        return Text(markup)
    parser = _HtmlToRich()
    parser.feed(markup)
    parser.close()
    return parser.text


def plain(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


class ConsoleChat:
    """One person at a terminal in a private chat with the bot."""

    def __init__(self, user_id: int, console: Console, media_dir: Path, first_name: str = "you"):
        self.user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
        self.chat = {"id": user_id, "first_name": first_name, "type": "private"}
        self.console = console
        self.media_dir = media_dir
        self.updates: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.messages: dict[int, dict[str, Any]] = {}
        self.keyboard_message: int | None = None
        self.pushed = 0  # updates handed to the bot so far
        self._message_ids = itertools.count(1)
        self._update_ids = itertools.count(1)
        self._query_ids = itertools.count(1)

    # --- the person's side --------------------------------------------------------------------

    def typed(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        press = re.fullmatch(r"#(\d+)", line)
        if press:
            self._press(int(press.group(1)))
            return
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "from": self.user,
            "chat": self.chat,
            "date": int(time.time()),
            "text": line,
        }
        command = re.match(r"/[A-Za-z0-9_]+", line)
        if command:
            message["entities"] = [{"offset": 0, "length": command.end(), "type": "bot_command"}]
        self._push({"message": message})

    def _press(self, n: int) -> None:
        msg = self.messages.get(self.keyboard_message or -1)
        buttons = [b for row in (msg or {}).get("reply_markup", {}).get("inline_keyboard", []) for b in row]
        if not 1 <= n <= len(buttons):
            self.console.print(f"[yellow]no button #{n} on the latest keyboard[/yellow]")
            return
        assert msg is not None
        query = {
            "id": str(next(self._query_ids)),
            "from": self.user,
            "message": self._message_json(msg),
            "chat_instance": "console",
            "data": buttons[n - 1]["callback_data"],
        }
        self._push({"callback_query": query})

    def _push(self, update: dict[str, Any]) -> None:
        update["update_id"] = next(self._update_ids)
        self.pushed += 1
        self.updates.put_nowait(update)

    # --- the Bot API side ---------------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any], files: dict[str, Any]) -> Any:
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return True  # methods without a visible effect in a terminal (setMyCommands, ...)
        return await handler(params, files)

    async def _api_getMe(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        return {
            **BOT_USER,
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _api_getUpdates(self, params: dict[str, Any], files: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            first = await asyncio.wait_for(
                self.updates.get(), timeout=float(params.get("timeout") or 0) or 0.1
            )
        except TimeoutError:
            return []
        batch = [first]
        while not self.updates.empty():
            batch.append(self.updates.get_nowait())
        return batch

    def _store(self, params: dict[str, Any], **fields: Any) -> dict[str, Any]:
        msg = {
            "message_id": next(self._message_ids),
            "reply_markup": params.get("reply_markup") or {},
            "parse_mode": params.get("parse_mode"),
            **fields,
        }
        self.messages[msg["message_id"]] = msg
        return msg

    async def _api_sendMessage(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        msg = self._store(params, text=params["text"])
        self._show(msg)
        return self._message_json(msg)

    async def _api_sendPhoto(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        content = files["photo"][1]
        data = content if isinstance(content, bytes) else content.read()
        self.media_dir.mkdir(parents=True, exist_ok=True)
        path = self.media_dir / f"chart-{int(time.time() * 1000)}.png"
        path.write_bytes(data)
        msg = self._store(params, caption=params.get("caption") or "", photo=str(path))
        self._show(msg)
        return self._message_json(msg)

    async def _api_editMessageText(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages[int(params["message_id"])]
        msg.update(
            text=params["text"],
            reply_markup=params.get("reply_markup") or {},
            parse_mode=params.get("parse_mode"),
        )
        self._show(msg, edited=True)
        return self._message_json(msg)

    async def _api_editMessageReplyMarkup(
        self, params: dict[str, Any], files: dict[str, Any]
    ) -> dict[str, Any]:
        msg = self.messages[int(params["message_id"])]
        msg["reply_markup"] = params.get("reply_markup") or {}
        self._show(msg, edited=True)
        return self._message_json(msg)

    async def _api_answerCallbackQuery(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        if params.get("text"):
            self.console.print(Text(f"  ({params['text']})", style="dim"))
        return True

    def _message_json(self, msg: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message_id": msg["message_id"],
            "from": BOT_USER,
            "chat": self.chat,
            "date": int(time.time()),
        }
        if "text" in msg:
            body["text"] = plain(msg["text"]) if msg.get("parse_mode") else msg["text"]
        if "photo" in msg:
            body["photo"] = [
                {
                    "file_id": msg["photo"],
                    "file_unique_id": str(msg["message_id"]),
                    "width": 800,
                    "height": 400,
                }
            ]
            body["caption"] = plain(msg["caption"])
        if msg.get("reply_markup"):
            body["reply_markup"] = msg["reply_markup"]
        return body

    def _show(self, msg: dict[str, Any], edited: bool = False) -> None:
        head = Text("vanta" + (" (edited)" if edited else "") + "> ", style="bold green")
        if "photo" in msg:
            head.append(f"[chart: {msg['photo']}] ", style="magenta")
            head.append_text(html_to_rich(msg["caption"], msg.get("parse_mode")))
        else:
            head.append_text(html_to_rich(msg["text"], msg.get("parse_mode")))
        self.console.print(head)
        rows = msg.get("reply_markup", {}).get("inline_keyboard", [])
        if rows:
            self.keyboard_message = msg["message_id"]
            n = itertools.count(1)
            for row in rows:
                self.console.print(
                    Text("   " + "   ".join(f"#{next(n)} {b['text']}" for b in row), style="cyan")
                )


class ConsoleRequest(BaseRequest):
    """python-telegram-bot's transport, answered by a `ConsoleChat` instead of HTTP."""

    def __init__(self, chat: ConsoleChat):
        self.chat = chat

    @property
    def read_timeout(self) -> float | None:
        return None

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        api_method = url.rsplit("/", 1)[-1]
        params = request_data.parameters if request_data else {}
        files = request_data.multipart_data if request_data and request_data.contains_files else {}
        result = await self.chat.call(api_method, dict(params), dict(files or {}))
        return 200, json.dumps({"ok": True, "result": result}).encode()


def read_stdin(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str | None]:
    """Lines typed on stdin, read by a daemon thread (a blocked read never holds up exit);
    None marks the end of input."""
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def reader() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=reader, name="console-stdin", daemon=True).start()
    return lines


async def run_console(
    services: Services,
    deps: BotDeps,
    lines: asyncio.Queue[str | None],
    *,
    user_id: int,
    out: Console,
    echo: bool,
    deliver: bool,
    stop: asyncio.Event,
) -> None:
    """The bot on the console transport until `lines` ends (None) or `stop` is set. Each line goes
    to the bot after it has finished the previous one, so a scripted `#2` presses a button that
    exists by then; `echo` prints the lines (when they don't come from a person typing)."""
    from bot.app import build_application
    from bot.runner import delivery_worker, run_bot

    chat = ConsoleChat(user_id, out, Path(services.settings.vanta_home) / "console")
    app = build_application(
        deps,
        services.pool,
        token="0:console",
        base_url="console:",
        request=ConsoleRequest(chat),
        updates_request=ConsoleRequest(chat),
    )
    worker = delivery_worker(app, services, only_chats=[user_id]) if deliver else None
    bot_task = asyncio.create_task(run_bot(app, stop, worker=worker, poll_timeout=1))
    processor = app.update_processor
    try:
        while not stop.is_set():
            line = await _next_line(lines, stop)
            if line is None:
                break
            if echo and line.strip():
                out.print(Text.assemble(("you> ", "bold"), line.rstrip()))
            chat.typed(line)
            await _until(processor.wait_processed(chat.pushed), stop)  # type: ignore[attr-defined]
    finally:
        stop.set()
        await bot_task


async def _next_line(lines: asyncio.Queue[str | None], stop: asyncio.Event) -> str | None:
    getter = asyncio.ensure_future(lines.get())
    await _until(getter, stop)
    return getter.result() if getter.done() and not getter.cancelled() else None


async def _until(work: Any, stop: asyncio.Event) -> None:
    """Await `work` unless `stop` is set first (then `work` is cancelled)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        task.cancel()
