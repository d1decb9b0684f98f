"""The JSON Schemas of the suite's documents (resnet34_npu/core/schemas.py) and ``report
validate``: each schema is a valid draft 2020-12 schema, a document with one wrong type, one
missing key or an unknown schema_version is refused with its JSON path named, and the docs
name every key the schemas declare. No forward pass: documents are built by hand from
build_report (the documents the runs write are validated where those tests already run)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from resnet34_npu.cli import main as cli
from resnet34_npu.core import schemas
from resnet34_npu.core.documents import dumps
from resnet34_npu.core.errors import InputError
from resnet34_npu.reports.report import build_report

DOCS = Path(__file__).resolve().parents[3] / "docs" / "report-schema.md"


def _case() -> dict:
    return {
        "image": "cat.jpg",
        "paths": ["/x/cat.jpg"],
        "batch_size": 1,
        "verdict": "pass",
        "failures": [],
        "warnings": [],
        "metrics": {"rel_l2_error": 1e-7, "cosine_similarity": 1.0, "kl_divergence": "nan"},
        "worst_abs": {"sample": 0, "class": 3, "reference": 1.5, "target": 1.5},
        "localization": None,
        "error": None,
        "blame": None,
    }


def document() -> dict:
    target = {
        "name": "cpu/fp32",
        "device": "cpu",
        "device_name": "AMD EPYC",
        "dtype": "fp32",
        "mode": "eager",
        "effective_precision": "fp32",
        "verdict": "pass",
        "latency_ms": {"median": 90.0, "mean": 91.0, "batch_size": 1, "clock": "perf_counter"},
        "images": [_case()],
    }
    weights = {"spec": "seeded", "path": None, "sha256": "ab" * 32, "tensor_sha256": "cd" * 32}
    return build_report(profile="default", weights=weights, reference={"name": "cpu/fp32"}, targets=[target])


def test_every_shipped_schema_is_a_2020_12_schema_with_its_id_and_version():
    shipped = sorted(p.name for p in schemas.SCHEMA_DIR.glob("*.schema.json"))
    assert {f"{n}.schema.json" for n in schemas.NAMES} <= set(shipped)
    for name in shipped:
        schema = json.loads((schemas.SCHEMA_DIR / name).read_text())
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == schemas.ID_PREFIX + name and isinstance(schema["x-schema-version"], int)


def test_a_good_document_passes_and_each_wrong_one_names_its_path():
    good = document()
    schemas.validate(good, "compare-report", source="r.json")
    wrong_type, missing, version, unknown_metric = (copy.deepcopy(good) for _ in range(4))
    wrong_type["targets"][0]["images"][0]["metrics"]["rel_l2_error"] = "small"
    del missing["targets"][0]["verdict"]
    version["schema_version"] = 99
    unknown_metric["targets"][0]["images"][0]["metrics"]["rel_l2"] = 0.0  # a closed object: no stray metric
    expected = {
        "$.targets[0].images[0].metrics.rel_l2_error is 'small', expected a number": wrong_type,
        "$.targets[0] lacks the key 'verdict'": missing,
        "$.schema_version is 99, expected one of 1, 2": version,
        "$.targets[0].images[0].metrics has a key this schema does not know": unknown_metric,
    }
    for words, doc in expected.items():
        with pytest.raises(InputError) as caught:
            schemas.validate(doc, "compare-report", source="r.json")
        message = str(caught.value)
        assert message.startswith("'r.json': does not match the compare-report schema: ") and words in message
        assert "\n" not in message


def test_the_acceptance_schema_adds_the_tests_to_the_compare_schema():
    doc = {**document(), "tests": [{"test": "t::x", "outcome": "passed", "duration_s": 0.1, "message": None}]}
    assert schemas.schema_for(doc) == "acceptance-report" and schemas.problem(doc, "acceptance-report") is None
    doc["tests"][0]["outcome"] = 3
    assert schemas.problem(doc, "acceptance-report") == "$.tests[0].outcome is 3, expected string"
    doc["tests"][0]["outcome"] = "passed"
    doc["targets"][0]["verdict"] = "fine"  # the compare schema's rules hold too ($ref)
    assert schemas.problem(doc, "acceptance-report").startswith("$.targets[0].verdict is 'fine', expected one of")


def test_an_unfinished_report_is_valid_without_targets():
    from resnet34_npu.reports.report import unfinished_report

    assert schemas.problem(unfinished_report("compare"), "compare-report") is None
    finished = {k: v for k, v in document().items() if k != "targets"}  # a finished report must list its targets
    assert schemas.problem(finished, "compare-report") == "$ lacks the key 'targets'"


def test_a_missing_schema_file_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(schemas, "SCHEMA_DIR", tmp_path)
    schemas.schema.cache_clear()
    schemas._validator.cache_clear()
    try:
        with pytest.raises(
            InputError, match=r"^schema file '.*compare-report\.schema\.json': cannot be read .*reinstall"
        ):
            schemas.validate(document(), "compare-report", source="r.json")
    finally:
        schemas.schema.cache_clear()
        schemas._validator.cache_clear()


def _declared(node: object, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in (node.get("properties") or {}).items():
            out.add(key)
            _declared(value, out)
        for key in ("$defs", "items", "then", "else", "allOf"):
            value = node.get(key)
            for child in value.values() if isinstance(value, dict) and key == "$defs" else [value]:
                for one in child if isinstance(child, list) else [child]:
                    _declared(one, out)
    return out


def test_the_docs_name_every_key_the_schemas_declare():
    text = DOCS.read_text()
    named = set(re.findall(r"`([^`]+)`", text))
    named |= {"rel_err_ratio" + suffix for suffix in re.findall(r"`(_1e-\d)`", text)}
    for name in schemas.NAMES:
        if name == "reference-header":
            continue  # documented in dataset/reference_file.py's docstring, the file format
        missing = sorted(
            k
            for k in _declared(schemas.schema(name), set())
            if k not in named and not any(k in phrase for phrase in named)
        )
        assert not missing, f"docs/report-schema.md does not name {missing} of {name}.schema.json"


def test_report_validate_names_each_file(tmp_path, capsys):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(dumps(document()))
    broken = document()
    broken["targets"][0]["latency_ms"]["median"] = "fast"
    bad.write_text(dumps(broken))
    assert cli.main(["report", "validate", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: valid compare-report\n"
    assert cli.main(["report", "validate", str(good), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == f"{good}: valid compare-report\n"
    assert err.strip() == (
        f"resnet34-npu report: error: report '{bad}': does not match the report schema: "
        '$.targets[0].latency_ms.median is \'fast\', expected a number, or "nan", "inf", "-inf" (JSON has no NaN)'
    )


def test_inlined_references_give_the_same_errors_and_a_recursive_one_stays_a_reference():
    """_validator inlines every $ref (jsonschema looks one up on every use: twice the time a
    history record); the errors must be those of the schema as shipped, resolved through the registry."""
    from referencing import Registry, Resource

    shipped = Registry().with_resources(
        (schemas.ID_PREFIX + f"{n}.schema.json", Resource.from_contents(schemas.schema(n))) for n in schemas.NAMES
    )
    good = document()
    broken = [good, copy.deepcopy(good), copy.deepcopy(good), copy.deepcopy(good)]
    broken[1]["targets"][0]["images"][0]["metrics"]["cosine_similarity"] = "one"
    broken[2]["targets"][0]["latency_ms"]["warmup"] = -1
    broken[3]["reference"] = []
    for name in ("compare-report", "acceptance-report"):
        plain = Draft202012Validator(schemas.schema(name), registry=shipped)
        assert "$ref" not in json.dumps(schemas._validator(name).schema)
        for doc in broken:
            ours = schemas.problem(doc, name)
            theirs = schemas.best_match(plain.iter_errors(doc))
            assert ours == (None if theirs is None else f"{theirs.json_path} {schemas._expected(theirs)}")
    recursive = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {"node": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "properties": {"tree": {"$ref": "#/$defs/node"}},
    }
    registry = Registry().with_resource("https://x/s.json", Resource.from_contents(recursive))
    assert schemas._inline(recursive, "https://x/s.json", registry, ()) is None
    beside = {**recursive, "properties": {"tree": {"$ref": "#/$defs/node", "maxItems": 1}}}  # a sibling keyword
    assert schemas._inline(beside, "https://x/s.json", registry, ()) is None
    flat = {**recursive, "$defs": {"leaf": {"type": "integer"}}, "properties": {"n": {"$ref": "#/$defs/leaf"}}}
    registry = Registry().with_resource("https://x/s.json", Resource.from_contents(flat))
    assert schemas._inline(flat, "https://x/s.json", registry, ())["properties"] == {"n": {"type": "integer"}}


def test_only_a_case_whose_target_raised_may_have_no_metrics():
    raised = document()
    case = raised["targets"][0]["images"][0]
    case.update(verdict="fail", error="target 'cpu/fp32' raised RuntimeError: boom", metrics={}, worst_abs=None)
    assert schemas.problem(raised, "compare-report") is None
    case["metrics"] = {"rel_l2_error": "nan"}  # as reports before 2026-12-08 wrote it
    assert schemas.problem(raised, "compare-report") is None
    measured = document()
    measured["targets"][0]["images"][0]["metrics"] = {}
    assert schemas.problem(measured, "compare-report") == (
        "$.targets[0].images[0].metrics lacks the key 'rel_l2_error'"
    )
