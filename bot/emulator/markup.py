"""Inline keyboards: the shape Telegram accepts and the 64-byte callback_data limit."""

from __future__ import annotations

from bot.emulator.errors import bad_request

JsonObject = dict[str, object]

CALLBACK_DATA_LIMIT = 64
BUTTONS_PER_ROW = 8
BUTTONS_TOTAL = 100
_ACTIONS = (
    "callback_data",
    "url",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def checked_markup(markup: object) -> JsonObject | None:
    """The inline keyboard as stored, or Telegram's refusal of its shape."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        # Reply keyboards and their removal are accepted as they are.
        return markup
    if not isinstance(rows, list):
        raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
    total = 0
    for row in rows:
        if not isinstance(row, list):
            raise bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
            )
        if len(row) > BUTTONS_PER_ROW:
            raise bad_request("BUTTONS_TOO_MUCH")
        total += len(row)
        for button in row:
            _check_button(button)
    if total > BUTTONS_TOTAL:
        raise bad_request("BUTTONS_TOO_MUCH")
    return {"inline_keyboard": rows}


def _check_button(button: object) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
        raise bad_request("can't parse inline keyboard button: Text is not specified")
    if not button["text"]:
        raise bad_request("BUTTON_TEXT_INVALID")
    actions = [key for key in _ACTIONS if key in button]
    if not actions:
        raise bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode()) <= CALLBACK_DATA_LIMIT:
            raise bad_request("BUTTON_DATA_INVALID")


def callback_data_of(markup: JsonObject | None) -> list[str]:
    """Every callback_data on a message's inline keyboard, in order."""
    if markup is None or not isinstance(markup.get("inline_keyboard"), list):
        return []
    rows = markup["inline_keyboard"]
    assert isinstance(rows, list)
    return [
        str(button["callback_data"])
        for row in rows
        for button in row
        if isinstance(button, dict) and "callback_data" in button
    ]
