"""Method parameters as Telegram reads them: from a JSON body, a URL-encoded or
multipart form, or the query string; in forms, objects arrive as JSON strings."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_request import FileField

from bot.emulator.errors import ApiError, bad_request

JsonObject = dict[str, object]


@dataclass
class Upload:
    data: bytes
    file_name: str | None
    mime_type: str | None


class Params:
    """Typed access to one call's parameters, refusing bad values with Telegram's words."""

    def __init__(self, values: dict[str, object]) -> None:
        self._values = values

    @classmethod
    async def read(cls, request: web.Request) -> Params:
        values: dict[str, object] = dict(request.query)
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON encoded request body") from None
            if not isinstance(body, dict):
                raise bad_request("can't parse JSON encoded request body")
            values.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            values.update(await request.post())
        return cls(values)

    def raw(self, name: str) -> object | None:
        value = self._values.get(name)
        return None if value == "" else value

    def string(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None or isinstance(value, FileField):
            return None
        return str(value)

    def integer(self, name: str, default: int | None = None) -> int | None:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return int(str(value))
        except ValueError:
            raise bad_request(f'field "{name}" must be a valid Number') from None

    def boolean(self, name: str) -> bool:
        value = self.raw(name)
        return value is True or str(value).lower() in ("true", "1")

    def json(self, name: str) -> object | None:
        value = self.raw(name)
        if isinstance(value, str):
            try:
                decoded: object = json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {name} JSON object") from None
            return decoded
        return value

    def upload(self, name: str) -> Upload | str | None:
        """An uploaded file (directly or via `attach://`), or a file_id to reuse."""
        value = self.raw(name)
        if isinstance(value, str) and value.startswith("attach://"):
            value = self.raw(value.removeprefix("attach://"))
        if isinstance(value, FileField):
            return Upload(value.file.read(), value.filename, value.content_type)
        if value is None:
            return None
        return str(value)

    def require_chat_id(self) -> object:
        chat_id = self.raw("chat_id")
        if chat_id is None:
            raise bad_request("chat_id is empty")
        return chat_id

    def require_message_id(self) -> int:
        message_id = self.integer("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        return message_id


def ensure(condition: bool, error: ApiError) -> None:
    if not condition:
        raise error
