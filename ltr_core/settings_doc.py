"""The configuration reference, generated from the schema (`ltr_core.settings`).

`python -m ltr_core.settings_doc` prints docs/configuration.md; `make docs` writes it and `make
docs-check` (CI) fails when the committed file differs from what the schema gives.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ltr_core.settings import (
    EXTERNAL_SECRETS,
    KNOWN_VARIABLES,
    Derived,
    Range,
    Settings,
    aliases,
    group_of,
    is_secret,
)

HEADER = """# Configuration reference

<!-- Generated from ltr_core/settings.py by `make docs`; do not edit by hand (`make docs-check`
fails in CI when this file and the schema disagree). -->

Every setting is an environment variable. `$LTR_HOME/ltr.env` (KEY=VALUE lines, written by
`ltr demo`) supplies values beneath the real environment, which always wins; `LTR_HOME` itself
is read from the environment only. A blank value means the default. In the path settings
`$NAME` and `${NAME}` are replaced by that variable's value (`$$` is a `$`; `$LTR_HOME` is its
default, `./var`, when it is not set, so the defaults below can be written out as they are
shown); a reference to any other variable that is not set is refused; a leading `~` or `~/` is
`$HOME` of the process that reads it, as in a shell: in a container that is the image user's
home (`/home/ltr`), not a mounted volume, so give containers absolute paths. A value of the wrong
type or outside its range stops the process with an error naming the variable; a secret's value
is never shown, logged nor part of a repr.
"""

# Variables read by libraries or by the deployment files rather than by the schema, documented
# here too (the deployment test checks every variable deploy/ sets is in this reference).
EXTERNAL = (
    ("AWS_ACCESS_KEY_ID", "boto3's credential chain: S3 access key"),
    ("AWS_SECRET_ACCESS_KEY", "boto3's credential chain: S3 secret key"),
    ("DAGSTER_HOME", "the Dagster instance (the Makefile sets `$LTR_HOME/dagster`)"),
    ("DAGSTER_PG_HOST", "host of the Dagster instance's Postgres (compose: `127.0.0.1`)"),
    ("DAGSTER_PG_PORT", "its port (`5432` in compose)"),
    ("DAGSTER_PG_USER", "its user (`dagster` in compose)"),
    ("DAGSTER_PG_PASSWORD", "its password (compose: `deploy/.env`; Kubernetes: a Secret)"),
    ("DAGSTER_PG_DB", "its database (`dagster` in compose)"),
    (
        "LTR_DAGSTER_IMAGE",
        "compose only: the Dagster image tag built (`make deploy-up` reads it from deploy/.env) "
        "and run",
    ),
    (
        "LTR_SERVING_IMAGE",
        "compose only: the serving image tag built (`make deploy-up` reads it from deploy/.env) "
        "and run",
    ),
    ("LTR_CODE_SERVER_PORT", "compose only: the code server's port on 127.0.0.1 (`4000`)"),
    ("LTR_WEBSERVER_PORT", "compose only: the Dagster UI's port on 127.0.0.1 (`3000`)"),
    ("LTR_SERVING_PORT_A", "compose only: ranking-service replica a's port (`8000`)"),
    ("LTR_SERVING_PORT_B", "compose only: ranking-service replica b's port (`8001`)"),
)
EXTERNAL_SECRET_NAMES = EXTERNAL_SECRETS | {"DAGSTER_PG_PASSWORD"}


def _title(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or model.__name__).strip()
    return " ".join(doc.split("\n\n")[0].split())


def _type(field: FieldInfo) -> str:
    annotation = field.annotation
    if annotation is SecretStr:
        return "text"
    if get_origin(annotation) is Literal:
        return " \\| ".join(f"`{value}`" for value in get_args(annotation))
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is tuple:
        return "list"
    names = {int: "integer", float: "number", str: "text", bool: "boolean"}
    if annotation is Path:
        return "path"
    return names.get(annotation, "text") if isinstance(annotation, type) else "text"


def _default(field: FieldInfo) -> str:
    derived = next((item for item in field.metadata if isinstance(item, Derived)), None)
    if derived is not None:
        return derived.text
    value: Any = field.default
    if value is PydanticUndefined:
        value = field.default_factory() if field.default_factory else None  # type: ignore[call-arg]
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, tuple):
        value = ",".join(str(v) for v in value)
    if value in ("", None, ()) or (hasattr(value, "days") and not value.days):
        return "unset"
    if isinstance(value, Path) and not value.is_absolute():
        value = f"./{value}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _range(field: FieldInfo) -> str:
    found = next((item for item in field.metadata if isinstance(item, Range)), None)
    return found.text() if found else ""


def _names(field: FieldInfo) -> str:
    names = aliases(field)
    text = f"`{names[0]}`"
    if len(names) > 1:
        text += " (or " + ", ".join(f"`{n}`" for n in names[1:]) + ")"
    return text


def _rows(model: type[BaseModel], seen: set[str]) -> Iterator[str]:
    for field in model.model_fields.values():
        names = aliases(field)
        if group_of(field) or not names or names[0] in seen:
            continue
        seen.update(names)
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        if is_secret(field):
            description = f"**secret**: {description}"
        cells = (_names(field), _type(field), _default(field), _range(field), description)
        yield "| " + " | ".join(cells) + " |"


def _groups(model: type[BaseModel], name: str) -> Iterator[tuple[str, type[BaseModel]]]:
    yield name, model
    for field_name, field in model.model_fields.items():
        group = group_of(field)
        if group is not None:
            yield from _groups(group, field_name)


def render() -> str:
    """docs/configuration.md: one table per group of the schema."""
    parts = [HEADER]
    seen: set[str] = set()
    for name, model in _groups(Settings, "general"):
        rows = list(_rows(model, seen))
        if not rows:
            continue
        heading = "General" if model is Settings else f"`{name}`: {_title(model)}"
        parts.append(f"## {heading}\n")
        parts.append("| variable | type | default | range | description |")
        parts.append("|---|---|---|---|---|")
        parts.extend(rows)
        parts.append("")
    parts.append("## Read by libraries and the deployment files\n")
    parts.append("| variable | description |")
    parts.append("|---|---|")
    for variable, description in EXTERNAL:
        secret = "**secret**: " if variable in EXTERNAL_SECRET_NAMES else ""
        parts.append(f"| `{variable}` | {secret}{description} |")
    return "\n".join(parts) + "\n"


def documented_variables() -> frozenset[str]:
    """Every variable the reference documents (the schema's and the libraries')."""
    return KNOWN_VARIABLES | {name for name, _ in EXTERNAL}


if __name__ == "__main__":
    sys.stdout.write(render())
