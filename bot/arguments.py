"""Strict parsing of command arguments against the specs' app and environment names.

APP is taken only when a word is exactly an app's name, ENV only when it is exactly
an environment of that app; whatever else is left must fit the command, or the
parse fails with a message saying what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.spec import Spec

MAX_HISTORY = 50


def shown(word: str) -> str:
    """A word quoted with anything outside ASCII spelled out (\\u0455, \\u200b), so a
    look-alike or an invisible character is visible in the refusal."""
    return ascii(word)


class BadArguments(ValueError):
    """What is wrong with the words after the command."""


@dataclass(frozen=True)
class Arguments:
    app: str | None = None
    env: str | None = None
    version: str | None = None
    reason: str = ""
    count: int = 10


def _app(specs: dict[str, Spec], words: list[str]) -> tuple[str | None, Spec, list[str]]:
    if words and words[0] in specs:
        return words[0], specs[words[0]], words[1:]
    if len(specs) == 1:
        return None, next(iter(specs.values())), words
    raise BadArguments(f"name the app first: {', '.join(sorted(specs))}")


def _env(spec: Spec, word: str) -> str:
    if word not in spec.environments:
        known = ", ".join(sorted(spec.environments))
        raise BadArguments(f"unknown environment {shown(word)} for {spec.app} (known: {known})")
    return word


def _target(specs: dict[str, Spec], words: list[str]) -> tuple[str | None, str | None, list[str]]:
    app, spec, rest = _app(specs, words)
    if rest and rest[0] in spec.environments:
        return app, rest[0], rest[1:]
    return app, None, rest


def parse(command: str, text: str | None, specs: dict[str, Spec]) -> Arguments:
    """The arguments of /deploy, /rollback, /history, /lock, /unlock, /cancel, /promote,
    /status."""
    words = (text or "").split()
    if command == "deploy":
        app, spec, rest = _app(specs, words)
        if not rest:
            raise BadArguments("say which version to deploy")
        if len(rest) > 2:
            raise BadArguments("too many words")
        env = _env(spec, rest[1]) if len(rest) == 2 else None
        return Arguments(app=app, env=env, version=rest[0])
    if command == "lock":
        app, env, rest = _target(specs, words)
        if not rest:
            raise BadArguments("say why: a lock needs a reason others can read")
        return Arguments(app=app, env=env, reason=" ".join(rest))
    app, env, rest = _target(specs, words)
    if command == "rollback" and len(rest) <= 1:
        return Arguments(app=app, env=env, version=rest[0] if rest else None)
    if command == "history" and len(rest) <= 1:
        if not rest:
            return Arguments(app=app, env=env)
        if not (rest[0].isascii() and rest[0].isdigit()) or not 1 <= int(rest[0]) <= MAX_HISTORY:
            raise BadArguments(f"N must be a number from 1 to {MAX_HISTORY}, not {shown(rest[0])}")
        return Arguments(app=app, env=env, count=int(rest[0]))
    if command in ("unlock", "cancel", "promote", "status") and not rest:
        return Arguments(app=app, env=env)
    raise BadArguments(f"unexpected {shown(' '.join(rest))}")
