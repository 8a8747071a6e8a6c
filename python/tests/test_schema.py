"""The SDK's types agree with api/schema/*.json and docs/protocol.md."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import sandrun
from sandrun import protocol

REPO = Path(__file__).resolve().parents[2]
ENVELOPE = {"request_id", "session_id", "op"}


def schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REPO / "api" / "schema" / f"{name}.schema.json").read_text())
    return data


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def required_fields(cls: type) -> set[str]:
    return {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }


def test_one_request_class_per_op() -> None:
    ops = schema("request")["properties"]["op"]["enum"]
    assert sorted(protocol.REQUEST_TYPES) == sorted(ops)


def test_request_classes_take_the_fields_of_their_op() -> None:
    s = schema("request")
    for op, cls in protocol.REQUEST_TYPES.items():
        d = s["$defs"][op]
        allowed = set(d["propertyNames"]["enum"]) - ENVELOPE
        assert field_names(cls) == allowed, op
        assert required_fields(cls) == set(d.get("required", [])), op
        for name in field_names(cls):
            assert name in s["properties"], (op, name)


def test_request_field_types_agree() -> None:
    props = schema("request")["properties"]
    expected = {"string": str, "boolean": bool, "integer": int, "number": float, "object": dict}
    for op, cls in protocol.REQUEST_TYPES.items():
        for f in dataclasses.fields(cls):
            kind = props[f.name].get("type")
            if kind is None:  # enums (encoding) and consts (all)
                continue
            want = expected[kind]
            assert want.__name__ in str(f.type), (op, f.name, f.type, kind)


def test_completion_fields_agree() -> None:
    s = schema("completion")
    assert field_names(protocol.Completion) == set(s["properties"])
    assert set(s["required"]) <= field_names(protocol.Completion)
    defs = s["$defs"]
    pairs = {
        "error": protocol.ErrorInfo,
        "session": protocol.SessionInfo,
        "file_info": protocol.FileInfo,
        "match": protocol.Match,
        "process_info": protocol.ProcessInfo,
        "timing": protocol.Timing,
    }
    for name, cls in pairs.items():
        assert field_names(cls) == set(defs[name]["properties"]), name
        assert required_fields(cls) <= set(defs[name].get("required", [])), name


def test_error_codes_agree() -> None:
    codes = schema("completion")["$defs"]["error"]["properties"]["code"]["enum"]
    assert sorted(protocol.ERROR_CODES) == sorted(codes)


def test_request_limit_is_the_documented_one() -> None:
    doc = (REPO / "docs" / "protocol.md").read_text()
    m = re.search(r"^\| request message data\b[^|]*\| (\d+) bytes", doc, re.M)
    assert m, "docs/protocol.md has no request message limit"
    assert sandrun.MAX_REQUEST_BYTES == int(m.group(1))
    assert re.search(rf"`file.write`.*{protocol.MAX_INLINE_FILE_BYTES} bytes", doc)


def test_a_documented_completion_decodes() -> None:
    doc = (REPO / "docs" / "protocol.md").read_text()
    blocks = re.findall(r"<!-- example: completion -->\n```json\n(.*?)```", doc, re.S)
    assert blocks
    for block in blocks:
        raw = json.loads(block)
        done = sandrun.Completion.from_dict(raw)
        assert done.request_id == raw["request_id"]
        assert done.status == raw["status"]
        if "processes" in raw:
            assert [p.pid for p in done.processes] == [p["pid"] for p in raw["processes"]]
        if "error" in raw:
            assert done.error is not None and done.error.code == raw["error"]["code"]


def test_encoded_requests_carry_only_set_fields() -> None:
    data = protocol.encode_request("r1", "s1", sandrun.ExecRequest(command="ls", timeout_seconds=5))
    assert json.loads(data) == {"request_id": "r1", "session_id": "s1", "op": "exec", "command": "ls", "timeout_seconds": 5}
