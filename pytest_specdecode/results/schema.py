"""What every JSON file we write shares: one schema version, one non-finite-number policy, one
writer, and one reader of stored files (baselines and named runs) that names the file it refuses.

The report, stored baselines and named runs are read by people, CI steps and later sessions, so they
must be strict JSON: `request_rate` may be inf, which `json.dumps` would write as a bare `Infinity`
that most parsers reject. Every model we write derives from `Model`, whose policy is pydantic's own
`ser_json_inf_nan="strings"` ("Infinity", "-Infinity", "NaN": strings pydantic reads back into
floats), and every file is written by `write_document` from such a model, so no file can differ.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

#: One version for every file we write (report, baselines, runs); 2 added windows, warnings,
#: per-request seeds and target log-probabilities. A stored file of an older version is measured
#: again, never read as if its missing fields were empty.
SCHEMA_VERSION = 2


Validated = TypeVar("Validated", bound=BaseModel)


class Model(BaseModel):
    """The base of every model that reaches a file: the policy applies to the model dumped and to
    each nested model by its own config, so a nested model without it would write null for inf."""

    model_config = ConfigDict(ser_json_inf_nan="strings")


class BaselineError(ValueError):
    """A stored file that cannot be used, or a name that cannot be stored; the message names the file."""


def write_document(path: Path, document: Model, indent: int = 1, exclude: Any = None) -> Path:
    """Write `document` through a temporary file and `os.replace`, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = document.model_dump_json(indent=indent, exclude=exclude) + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def older_schema(path: Path) -> bool:
    """Whether the file is a well-formed document written by an older schema version."""
    try:
        version = json.loads(path.read_text(encoding="utf-8")).get("schema_version")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False  # read_document names the problem
    return isinstance(version, int) and not isinstance(version, bool) and version < SCHEMA_VERSION


def read_document(path: Path, kind: str) -> dict[str, Any]:
    """The file's JSON document, checked for kind, schema version and creation time."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"{path}: not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise BaselineError(f"{path}: not a {kind} file (top level is {type(document).__name__}, not an object)")
    if document.get("kind") != kind:
        raise BaselineError(f"{path}: kind is {document.get('kind')!r}, expected {kind!r}")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise BaselineError(
            f"{path}: schema_version {document.get('schema_version')!r}, this version reads {SCHEMA_VERSION}"
        )
    created_at = document.get("created_at")
    if isinstance(created_at, bool) or not isinstance(created_at, (int, float)):
        raise BaselineError(f"{path}: created_at {created_at!r} is not a unix time")
    return document


def validated(path: Path, model: type[Validated], data: Any, what: str) -> Validated:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        raise BaselineError(f"{path}: {what} do not validate: {where}: {problem['msg']}") from None
