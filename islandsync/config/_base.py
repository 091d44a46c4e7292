"""Pieces every spec model shares: strictness, conflict errors and tagged unions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Tag
from pydantic_core import PydanticCustomError

#: Unknown fields are errors, ints must be ints, NaN and infinity are refused.
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _listed(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


#: Marks a tuple field that takes a list (JSON's and TOML's arrays): strict mode takes only
#: tuples, and the models are frozen (hashable), so they hold tuples.
AS_TUPLE = BeforeValidator(_listed)


def conflicts(problems: list[tuple[str, str]]) -> None:
    """Raise one validation error for every ``(relative path, message)`` found, if any.

    A model validator cannot choose its error's loc, so each pair rides in ctx and the spec
    loader's error formatting prefixes the validator's loc; the text still reads well when a
    model is built directly in Python."""
    if problems:
        text = "; ".join(f"{p}: {m}" for p, m in problems).replace("{", "(").replace("}", ")")
        raise PydanticCustomError("spec_conflict", text, {"problems": problems})


def _tag(field: str, default: str) -> Callable[[Any], str | None]:
    # A missing tag means the model's default (RealGenome's kind, GAConfig's name), as the
    # models declare; a non-string tag is left to the custom "Input should be ..." error.
    def pick(value: Any) -> str | None:
        tag = value.get(field, default) if isinstance(value, dict) else getattr(value, field, None)
        return tag if isinstance(tag, str) else None
    return pick


def tagged_union(models: Mapping[str, type[BaseModel]], *, field: str, default: str,
                 error_type: str) -> Any:
    """The annotation of a field holding one of ``models``, chosen by its ``field`` (the tag;
    missing means ``default``). A wrong tag is one error, ``Input should be 'a' or 'b'``, at
    ``<loc>.<field>``, instead of one error per member."""
    names = list(models)
    choices = " or ".join(repr(n) for n in names) if len(names) <= 2 else \
        ", ".join(repr(n) for n in names[:-1]) + f" or {names[-1]!r}"
    members = tuple(Annotated[model, Tag(name)] for name, model in models.items())
    return Annotated[
        Union[members],  # noqa: UP007 - a runtime tuple of members needs Union[...]
        Discriminator(_tag(field, default), custom_error_type=error_type,
                      custom_error_message=f"Input should be {choices}",
                      custom_error_context={"subpath": field}),
    ]


__all__ = ["AS_TUPLE", "STRICT", "conflicts", "tagged_union"]
