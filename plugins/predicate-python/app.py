"""A Logistis capture predicate written in Python (componentize-py).

Skips changes to objects that carry an opt-out annotation, e.g. `logistis.io/ignore: "true"`.

    predicates:
      - name: python
        file: predicate_python.wasm
        deadline-ms: 50        # Python calls cost ~10 µs reused, ~1 ms on a fresh instance
        memory-mb: 128
        config: {annotation: "logistis.io/ignore"}

Build: componentize-py -d ../../wit -w predicate componentize app -o predicate_python.wasm
"""

from __future__ import annotations

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, types

DEFAULT_ANNOTATION = "logistis.io/ignore"


def should_skip(annotation: str, object_json) -> bool:
    """Pure logic (tested natively with `python3 -m unittest test_app`)."""
    if not object_json:
        return False
    obj = json.loads(object_json)
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(annotation, "")).lower() == "true"


def parse_config(text: str) -> str:
    config = json.loads(text) if text.strip() else None
    if config is None:
        return DEFAULT_ANNOTATION
    if not isinstance(config, dict) or set(config) - {"annotation"}:
        raise ValueError("config accepts only {annotation: <name>}")
    annotation = config.get("annotation", DEFAULT_ANNOTATION)
    if not isinstance(annotation, str) or not annotation:
        raise ValueError("config.annotation must be a non-empty string")
    return annotation


class WitWorld(wit_world.WitWorld):
    annotation = DEFAULT_ANNOTATION

    def configure(self, config: str) -> None:
        try:
            WitWorld.annotation = parse_config(config)
        except ValueError as error:
            raise Err(str(error))
        host.log(types.Level.INFO, f"configured: skip objects annotated {WitWorld.annotation}=true")

    def evaluate(self, event: types.Event) -> types.Verdict:
        if should_skip(WitWorld.annotation, event.object):
            return types.Verdict.SKIP
        return types.Verdict.CAPTURE
