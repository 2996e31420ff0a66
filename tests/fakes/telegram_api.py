"""A local stand-in for Telegram's Bot API, spoken to over real HTTP by python-telegram-bot.

It answers what the bot uses (getMe, deleteWebhook, setMyCommands, getMyCommands, getUpdates as a
long poll with offsets, sendMessage, sendPhoto, editMessageText, editMessageReplyMarkup,
answerCallbackQuery) at `/bot<token>/<method>`, with bodies as PTB sends them (form-encoded, or
multipart when a file is attached; JSON is accepted too) and answers in the Bot API's own shapes
(`{"ok": true, "result": ...}`, `{"ok": false, "error_code", "description", "parameters"}`).

Like Telegram it refuses what Telegram refuses, so a bug in the bot shows up here rather than in
production: a wrong token (401), a chat that never talked to the bot (403 "bot can't initiate
conversation"), a blocked bot (403 "bot was blocked by the user"), an empty or over-long text,
unbalanced HTML, callback data over 64 bytes, an edit that changes nothing ("message is not
modified"), a text edit of a photo, a photo that is not an image. Tests can also inject 429
answers with `retry_after`.

The test side pushes what users do (`send_text`, `press`) and reads what the bot did per chat
(`messages`, `calls`), waiting on progress (`wait_for`) rather than on wall clocks.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import web

BOT_ID = 7_000_000_001
BOT_USERNAME = "vanta_test_bot"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a", "tg-spoiler"}
_INT_FIELDS = {"chat_id", "message_id", "offset", "limit", "timeout", "reply_to_message_id"}


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


@dataclass
class BotMessage:
    """A message the bot sent, as it stands now (edits applied), with its history."""

    chat_id: int
    message_id: int
    text: str | None = None
    caption: str | None = None
    photo: bytes | None = None
    reply_markup: dict[str, Any] | None = None
    parse_mode: str | None = None
    at: float = 0.0
    edits: list[str] = field(default_factory=list)

    @property
    def plain(self) -> str:
        """Text or caption without HTML tags, entities unescaped: what the user reads."""
        raw = self.text if self.text is not None else (self.caption or "")
        if self.parse_mode and self.parse_mode.upper() == "HTML":
            raw = html.unescape(re.sub(r"<[^>]+>", "", raw))
        return raw

    @property
    def buttons(self) -> list[dict[str, Any]]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [b for row in rows for b in row]

    def button(self, label_part: str) -> dict[str, Any]:
        """The inline button labelled `label_part`, else the one whose label contains it (exactly
        one must)."""
        found = [b for b in self.buttons if b["text"] == label_part] or [
            b for b in self.buttons if label_part.lower() in b["text"].lower()
        ]
        if len(found) != 1:
            labels = [b["text"] for b in self.buttons]
            raise AssertionError(f"{len(found)} buttons match {label_part!r} among {labels}")
        return found[0]


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]
    at: float
    ok: bool


@dataclass
class _Injected:
    method: str
    chat_id: int | None
    code: int
    description: str
    retry_after: int | None
    times: int


class _HtmlChecker(HTMLParser):
    """Telegram's HTML parse mode: a few tags, properly nested, entities escaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.error: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED_TAGS and tag != "span" and tag != "blockquote":
            self.error = f'Unsupported start tag "{tag}"'
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.error = f'Can\'t find end tag corresponding to start tag "{tag}"'
            return
        self.stack.pop()


def _check_html(text: str) -> None:
    if re.search(r"<(?![a-zA-Z/])", text) or re.search(r"&(?![a-zA-Z]+;|#\d+;|#x[0-9a-fA-F]+;)", text):
        raise ApiError(400, "Bad Request: can't parse entities: unescaped character")
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    if checker.error is None and checker.stack:
        checker.error = f'Can\'t find end tag corresponding to start tag "{checker.stack[-1]}"'
    if checker.error:
        raise ApiError(400, f"Bad Request: can't parse entities: {checker.error}")


def _png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


class FakeTelegram:
    def __init__(self, token: str, *, clock: Callable[[], float] = time.monotonic):
        self.token = token
        self.clock = clock
        self.base_url = ""
        self.calls: list[Call] = []
        self.commands: list[dict[str, str]] = []
        self.blocked: set[int] = set()
        self.known_chats: set[int] = set()
        self._chats: dict[int, dict[int, BotMessage]] = {}
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self.pushed = 0  # updates the test side has pushed so far
        self.transcript: list[tuple[int, str]] = []  # (chat, line) in the order things happened
        self._confirmed = 0  # the highest update_id the bot confirmed via a later offset
        self._callbacks: dict[str, bool] = {}  # query id -> answered
        self._callback_ids = itertools.count(1)
        self._injected: list[_Injected] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.polls = 0

    # --- server -------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/bot"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
            return params
        if request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    params[key] = value.file.read()
                else:
                    params[key] = value
        for key in _INT_FIELDS & params.keys():
            if isinstance(params[key], str):
                params[key] = int(params[key])
        for key in ("reply_markup", "commands", "allowed_updates"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        params = await self._params(request)
        at = self.clock()
        try:
            self._inject(method, params)
            handler = getattr(self, f"_api_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            result = await handler(params, at)
        except ApiError as err:
            self.calls.append(Call(method, params, at, ok=False))
            await self._notify()
            return web.json_response(err.body(), status=err.code)
        if method != "getUpdates":
            self.calls.append(Call(method, params, at, ok=True))
            await self._notify()
        return web.json_response({"ok": True, "result": result})

    def _inject(self, method: str, params: dict[str, Any]) -> None:
        chat = params.get("chat_id")
        if method in ("sendMessage", "sendPhoto") and chat in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        for inj in self._injected:
            if inj.times > 0 and inj.method == method and inj.chat_id in (None, chat):
                inj.times -= 1
                raise ApiError(inj.code, inj.description, inj.retry_after)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- Bot API methods ----------------------------------------------------------------------

    async def _api_getMe(self, params: dict[str, Any], at: float) -> dict[str, Any]:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Vanta",
            "username": BOT_USERNAME,
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _api_deleteWebhook(self, params: dict[str, Any], at: float) -> bool:
        return True

    async def _api_setMyCommands(self, params: dict[str, Any], at: float) -> bool:
        commands = params.get("commands") or []
        for c in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", c["command"]) or not 1 <= len(c["description"]) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        self.commands = commands
        return True

    async def _api_getMyCommands(self, params: dict[str, Any], at: float) -> list[dict[str, str]]:
        return self.commands

    async def _api_getUpdates(self, params: dict[str, Any], at: float) -> list[dict[str, Any]]:
        offset = params.get("offset")
        if offset is not None:
            self._confirmed = max(self._confirmed, offset - 1)
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            await self._notify()
        self.polls += 1
        limit = params.get("limit") or 100
        timeout = params.get("timeout") or 0
        if not self._updates and timeout:
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: bool(self._updates)), timeout)
                except TimeoutError:
                    pass
        return self._updates[:limit]

    def _bot_message(self, params: dict[str, Any], at: float) -> BotMessage:
        chat_id = params["chat_id"]
        if chat_id not in self.known_chats:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        markup = params.get("reply_markup")
        self._check_markup(markup)
        msg = BotMessage(
            chat_id=chat_id,
            message_id=self._next_message_id(chat_id),
            reply_markup=markup if markup and markup.get("inline_keyboard") else None,
            parse_mode=params.get("parse_mode"),
            at=at,
        )
        return msg

    async def _api_sendMessage(self, params: dict[str, Any], at: float) -> dict[str, Any]:
        text = params.get("text", "")
        self._check_text(text, params.get("parse_mode"), 4096, "message text")
        msg = self._bot_message(params, at)
        msg.text = text
        self._chats.setdefault(msg.chat_id, {})[msg.message_id] = msg
        self._log(msg.chat_id, "bot", msg)
        return self._message_json(msg)

    async def _api_sendPhoto(self, params: dict[str, Any], at: float) -> dict[str, Any]:
        photo = params.get("photo")
        if not isinstance(photo, bytes):
            raise ApiError(400, "Bad Request: there is no photo in the request")
        if not photo.startswith(PNG_MAGIC) and not photo.startswith(b"\xff\xd8\xff"):
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        caption = params.get("caption")
        if caption is not None:
            self._check_text(caption, params.get("parse_mode"), 1024, "message caption")
        msg = self._bot_message(params, at)
        msg.photo, msg.caption = photo, caption
        self._chats.setdefault(msg.chat_id, {})[msg.message_id] = msg
        self._log(msg.chat_id, "bot", msg)
        return self._message_json(msg)

    def _existing(self, params: dict[str, Any]) -> BotMessage:
        msg = self._chats.get(params.get("chat_id", 0), {}).get(params.get("message_id", 0))
        if msg is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        return msg

    async def _api_editMessageText(self, params: dict[str, Any], at: float) -> dict[str, Any]:
        msg = self._existing(params)
        if msg.text is None:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        text = params.get("text", "")
        self._check_text(text, params.get("parse_mode"), 4096, "message text")
        markup = params.get("reply_markup")
        self._check_markup(markup)
        markup = markup if markup and markup.get("inline_keyboard") else None
        if text == msg.text and markup == msg.reply_markup:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup "
                "are exactly the same as a current content and reply markup of the message",
            )
        msg.edits.append(msg.text)
        msg.text, msg.reply_markup, msg.parse_mode, msg.at = text, markup, params.get("parse_mode"), at
        self._log(msg.chat_id, "bot (edit)", msg)
        return self._message_json(msg)

    async def _api_editMessageReplyMarkup(self, params: dict[str, Any], at: float) -> dict[str, Any]:
        msg = self._existing(params)
        markup = params.get("reply_markup")
        self._check_markup(markup)
        markup = markup if markup and markup.get("inline_keyboard") else None
        if markup == msg.reply_markup:
            raise ApiError(400, "Bad Request: message is not modified")
        msg.reply_markup, msg.at = markup, at
        return self._message_json(msg)

    async def _api_answerCallbackQuery(self, params: dict[str, Any], at: float) -> bool:
        qid = params.get("callback_query_id")
        if qid not in self._callbacks or self._callbacks[qid]:
            raise ApiError(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        self._callbacks[qid] = True
        return True

    # --- validation ---------------------------------------------------------------------------

    @staticmethod
    def _check_text(text: str, parse_mode: str | None, limit: int, what: str) -> None:
        if not text.strip():
            raise ApiError(400, f"Bad Request: {what} is empty")
        if parse_mode and parse_mode.upper() == "HTML":
            _check_html(text)
            visible = html.unescape(re.sub(r"<[^>]+>", "", text))
        else:
            visible = text
        if len(visible) > limit:
            raise ApiError(400, f"Bad Request: {what} is too long")

    @staticmethod
    def _check_markup(markup: dict[str, Any] | None) -> None:
        for row in (markup or {}).get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode()) <= 64:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
                if not button.get("text"):
                    raise ApiError(400, "Bad Request: text buttons are unallowed in the inline keyboard")

    # --- JSON shapes --------------------------------------------------------------------------

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    @staticmethod
    def _user(user_id: int, first_name: str = "Ann") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}

    @staticmethod
    def _chat(chat_id: int, first_name: str = "Ann") -> dict[str, Any]:
        return {"id": chat_id, "first_name": first_name, "type": "private"}

    def _message_json(self, msg: BotMessage) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message_id": msg.message_id,
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Vanta", "username": BOT_USERNAME},
            "chat": self._chat(msg.chat_id),
            "date": int(time.time()),
        }
        if msg.edits:
            body["edit_date"] = int(time.time())
        if msg.text is not None:
            body["text"] = html.unescape(re.sub(r"<[^>]+>", "", msg.text)) if msg.parse_mode else msg.text
        if msg.photo is not None:
            width, height = _png_size(msg.photo) if msg.photo.startswith(PNG_MAGIC) else (0, 0)
            unique = f"p{msg.chat_id}_{msg.message_id}"
            body["photo"] = [
                {
                    "file_id": f"AgAC{unique}",
                    "file_unique_id": unique,
                    "width": width,
                    "height": height,
                    "file_size": len(msg.photo),
                }
            ]
            if msg.caption is not None:
                body["caption"] = msg.caption
        if msg.reply_markup:
            body["reply_markup"] = msg.reply_markup
        return body

    # --- the test's side ----------------------------------------------------------------------

    def _log(self, chat_id: int, who: str, msg: BotMessage) -> None:
        body = ("[PNG chart] " if msg.photo else "") + msg.plain
        buttons = "  ".join(f"[{b['text']}]" for b in msg.buttons)
        self.transcript.append((chat_id, f"{who}> {body}" + (f"\n      {buttons}" if buttons else "")))

    def open_chat(self, user_id: int) -> None:
        """The user has pressed Start at some point: the bot may write to them."""
        self.known_chats.add(user_id)

    def send_text(self, user_id: int, text: str, first_name: str = "Ann") -> int:
        """A user types `text` in their private chat with the bot; returns the update id."""
        self.known_chats.add(user_id)
        message: dict[str, Any] = {
            "message_id": self._next_message_id(user_id),
            "from": self._user(user_id, first_name),
            "chat": self._chat(user_id, first_name),
            "date": int(time.time()),
            "text": text,
        }
        command = re.match(r"/[A-Za-z0-9_]+(@\w+)?", text)
        if command:
            message["entities"] = [{"offset": 0, "length": command.end(), "type": "bot_command"}]
        self.transcript.append((user_id, f"user> {text}"))
        return self._push({"message": message})

    def press(self, user_id: int, message: BotMessage, label_part: str) -> int:
        """The user presses the inline button of `message` whose label contains `label_part`."""
        button = message.button(label_part)
        self.transcript.append((user_id, f"user> (presses [{button['text']}])"))
        return self.press_data(user_id, message, button["callback_data"])

    def press_data(self, user_id: int, message: BotMessage, data: str) -> int:
        qid = str(next(self._callback_ids) * 7919)
        self._callbacks[qid] = False
        query = {
            "id": qid,
            "from": self._user(user_id),
            "message": self._message_json(message),
            "chat_instance": f"ci{user_id}",
            "data": data,
        }
        return self._push({"callback_query": query})

    def _push(self, update: dict[str, Any]) -> int:
        update["update_id"] = next(self._update_ids)
        self.pushed += 1
        self._updates.append(update)
        asyncio.get_running_loop().create_task(self._notify())
        return int(update["update_id"])

    def block(self, chat_id: int) -> None:
        """The user blocks the bot: every later message to them is refused with 403."""
        self.blocked.add(chat_id)

    def inject(
        self,
        method: str,
        *,
        chat_id: int | None = None,
        code: int = 429,
        retry_after: int | None = 1,
        description: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` (to `chat_id`, or any) with an error."""
        if description is None:
            description = f"Too Many Requests: retry after {retry_after}" if code == 429 else "Bad Request"
        self._injected.append(
            _Injected(method, chat_id, code, description, retry_after if code == 429 else None, times)
        )

    def messages(self, chat_id: int) -> list[BotMessage]:
        """What the bot sent to this chat, oldest first, edits applied."""
        return sorted(self._chats.get(chat_id, {}).values(), key=lambda m: m.message_id)

    def last(self, chat_id: int) -> BotMessage:
        msgs = self.messages(chat_id)
        if not msgs:
            raise AssertionError(f"the bot sent nothing to chat {chat_id}")
        return msgs[-1]

    def ok_calls(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.ok]

    def all_chats(self) -> dict[int, list[BotMessage]]:
        return {chat: self.messages(chat) for chat in self._chats}

    def answered(self, update_id: int) -> bool:
        """The bot has confirmed it received this update (a later getUpdates offset)."""
        return self._confirmed >= update_id

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
        """Wait until `predicate()` is truthy (re-checked after every call the bot makes)."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
                try:
                    await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
                except TimeoutError:
                    pass

    async def reply_to(
        self,
        user_id: int,
        text: str,
        *,
        until: Callable[[list[BotMessage]], Any] | None = None,
        timeout: float = 30.0,
    ) -> BotMessage:
        """Send `text` as the user and wait until the bot has acted in the chat (sent or edited a
        message) and, if given, `until(messages)` holds; returns the chat's latest message."""
        before = self.chat_actions(user_id)
        self.send_text(user_id, text)
        await self.wait_for(
            lambda: self.chat_actions(user_id) > before and (until is None or until(self.messages(user_id))),
            timeout,
            f"an answer to {text!r}",
        )
        return self.last(user_id)

    async def click(
        self,
        user_id: int,
        message: BotMessage,
        label_part: str,
        *,
        until: Callable[[list[BotMessage]], Any] | None = None,
        timeout: float = 30.0,
    ) -> BotMessage:
        """Press a button and wait until the bot has answered the query and acted in the chat.
        Returns the newest message the bot sent, or the pressed one if it was only edited."""
        before = self.chat_actions(user_id)
        newest = self.last(user_id).message_id
        answered = len(self.ok_calls("answerCallbackQuery"))
        self.press(user_id, message, label_part)
        await self.wait_for(
            lambda: (
                self.chat_actions(user_id) > before
                and len(self.ok_calls("answerCallbackQuery")) > answered
                and (until is None or until(self.messages(user_id)))
            ),
            timeout,
            f"an answer to the button {label_part!r}",
        )
        latest = self.last(user_id)
        return latest if latest.message_id > newest else self._chats[user_id][message.message_id]

    def chat_actions(self, chat_id: int) -> int:
        """How many messages the bot has sent or edited in this chat so far."""
        return sum(1 for c in self.calls if c.ok and c.params.get("chat_id") == chat_id)
