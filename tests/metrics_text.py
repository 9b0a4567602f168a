"""Reading `/metrics` as Prometheus would: the exposition text, parsed by the client
library's own parser, and one sample's value by name and labels."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families


def scrape() -> str:
    """What a scrape of this process's default registry returns (the bot's /metrics)."""
    return generate_latest(REGISTRY).decode()


def value(text: str, name: str, **labels: str) -> float:
    """The sample `name` whose labels include `labels`, summed; 0.0 when there is none
    (a labelled series appears only once something is recorded in it)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total
