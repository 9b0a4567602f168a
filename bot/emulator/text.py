"""Message text as Telegram sees it: HTML parse mode, command entities, UTF-16 offsets.

Telegram counts entity offsets and lengths in UTF-16 code units and reports HTML
errors at UTF-8 byte offsets; both are reproduced here so the bot's own length
and escaping code meets the same judge as in production.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.emulator.errors import ApiError, bad_request

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024

_TAG_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "code": "code",
    "pre": "pre",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_CHARACTER_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ATTRIBUTE = re.compile(r"""([a-zA-Z][\w-]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""")
_TAG_NAME = re.compile(r"[a-zA-Z0-9-]*")
_COMMAND = re.compile(r"(?<![^\s])/[a-zA-Z0-9_]{1,64}(?:@[a-zA-Z0-9_]{3,32})?")


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _OpenTag:
    name: str
    offset: int
    attributes: dict[str, str] = field(default_factory=dict)


def _entity(tag: _OpenTag, end: int) -> dict[str, object] | None:
    entity: dict[str, object] = {
        "type": _TAG_ENTITY[tag.name],
        "offset": tag.offset,
        "length": end - tag.offset,
    }
    if tag.name == "a":
        if "href" not in tag.attributes:
            return None
        entity["url"] = tag.attributes["href"]
    if tag.name == "tg-emoji":
        entity["custom_emoji_id"] = tag.attributes.get("emoji-id", "")
    if tag.name == "blockquote" and "expandable" in tag.attributes:
        entity["type"] = "expandable_blockquote"
    return entity


def _parse_error(reason: str) -> ApiError:
    return bad_request(f"can't parse entities: {reason}")


def parse_html(source: str) -> tuple[str, list[dict[str, object]]]:
    """Plain text and entities of an HTML-formatted text, or Telegram's parse error."""
    pieces: list[str] = []
    position = 0  # UTF-16 offset in the plain text
    open_tags: list[_OpenTag] = []
    entities: list[dict[str, object]] = []
    i = 0
    while i < len(source):
        char = source[i]
        if char == "&":
            match = _CHARACTER_ENTITY.match(source, i)
            decoded = "&"
            if match:
                name = match.group(1)
                if name.startswith("#x"):
                    decoded = chr(int(name[2:], 16))
                elif name.startswith("#"):
                    decoded = chr(int(name[1:]))
                else:
                    decoded = _NAMED[name]
                i = match.end()
            else:
                i += 1
            pieces.append(decoded)
            position += utf16_length(decoded)
            continue
        if char != "<":
            pieces.append(char)
            position += utf16_length(char)
            i += 1
            continue
        byte_offset = len(source[:i].encode())
        close = source.find(">", i)
        if source.startswith("</", i):
            if close < 0:
                raise _parse_error(f"Unclosed end tag at byte offset {byte_offset}")
            name = source[i + 2 : close].strip().lower()
            if not open_tags:
                raise _parse_error(f"Unexpected end tag at byte offset {byte_offset}")
            if name != open_tags[-1].name:
                raise _parse_error(
                    f'Unmatched end tag at byte offset {byte_offset}, expected "</'
                    f'{open_tags[-1].name}>", found "</{name}>"'
                )
            tag = open_tags.pop()
            if position > tag.offset and (made := _entity(tag, position)) is not None:
                entities.append(made)
            i = close + 1
            continue
        name_match = _TAG_NAME.match(source, i + 1)
        name = name_match.group(0).lower() if name_match else ""
        if name not in _TAG_ENTITY:
            raise _parse_error(f'Unsupported start tag "{name}" at byte offset {byte_offset}')
        if close < 0:
            raise _parse_error(f"Unclosed start tag at byte offset {byte_offset}")
        attributes = {
            m.group(1).lower(): next(g for g in m.groups()[1:] if g is not None) or ""
            for m in _ATTRIBUTE.finditer(source[i + 1 + len(name) : close])
        }
        if "expandable" in source[i + 1 + len(name) : close].split():
            attributes["expandable"] = ""
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise _parse_error(
                f'Tag "span" must have class "tg-spoiler" at byte offset {byte_offset}'
            )
        if name == "tg-emoji" and not attributes.get("emoji-id"):
            raise _parse_error(
                f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {byte_offset}'
            )
        open_tags.append(_OpenTag(name, position, attributes))
        i = close + 1
    if open_tags:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{open_tags[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -int(str(e["length"]))))
    return "".join(pieces), entities


def checked_text(
    raw: str | None, parse_mode: str | None, limit: int = TEXT_LIMIT, caption: bool = False
) -> tuple[str, list[dict[str, object]]]:
    """Text and entities after parsing, within Telegram's length limit."""
    if raw is None:
        raw = ""
    entities: list[dict[str, object]] = []
    if parse_mode in (None, ""):
        text = raw
    elif parse_mode.lower() == "html":
        text, entities = parse_html(raw)
    else:
        raise bad_request("unsupported parse_mode")
    if not caption and not text.strip():
        raise bad_request("message text is empty")
    if len(text) > limit:
        raise bad_request("message caption is too long" if caption else "message is too long")
    return text, entities


def command_entities(text: str) -> list[dict[str, object]]:
    """The bot_command entities Telegram attaches to a user's text."""
    return [
        {
            "type": "bot_command",
            "offset": utf16_length(text[: match.start()]),
            "length": utf16_length(match.group(0)),
        }
        for match in _COMMAND.finditer(text)
    ]
