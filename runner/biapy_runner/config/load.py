"""Configuration: a BiaPy 3.x YAML file merged onto BiaPy's defaults, plus ``--set`` overrides.

Older BiaPy spellings (in the file and in each override) are first converted to BiaPy 3.7.1's keys
by :mod:`biapy_runner.config.convert`, as BiaPy's own converter does.

BiaPy writes tuples as strings (``"(256, 256, 1)"``) and floats in a form YAML reads as strings
(``1.E-4``); both are accepted wherever the default is a tuple/list or a float. Every key is
checked against the default tree of :mod:`biapy_runner.config.schema`: an unknown key is an
error naming the file, the line and the nearest valid key; a value of the wrong type or outside
the allowed values is an error naming the key, the value and what is expected. Keys that only
matter to training are accepted and listed once as ignored.
"""

from __future__ import annotations

import ast
import copy
import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from biapy_runner import log
from biapy_runner.config.convert import convert, nested
from biapy_runner.config.schema import (
    ALIASES,
    CHOICES,
    DEFAULTS,
    ELEMENT_CHOICES,
    FLEXIBLE,
    SUPPORTED_BIAPY_VERSIONS,
    TRAINING_ONLY,
    USED_FOR_INFERENCE,
)
from biapy_runner.errors import ConfigError

_MISSING = object()

#: Errors PyYAML lets through from values it cannot build (a 5000-digit integer, deep nesting).
_VALUE_ERRORS = (ValueError, OverflowError, RecursionError, MemoryError)


def _leaf_keys(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a nested dict into ``{"A.B.C": default}`` for its leaves."""
    out: dict[str, Any] = {}
    for name, value in tree.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict):
            out.update(_leaf_keys(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _section_keys(tree: Mapping[str, Any], prefix: str = "") -> set[str]:
    """All dotted names of sections (nested dicts) in ``tree``."""
    out: set[str] = set()
    for name, value in tree.items():
        if isinstance(value, dict):
            out.add(f"{prefix}{name}")
            out |= _section_keys(value, f"{prefix}{name}.")
    return out


LEAVES: dict[str, Any] = _leaf_keys(DEFAULTS)
SECTIONS: set[str] = _section_keys(DEFAULTS)


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def is_training_only(key: str) -> bool:
    """True when ``key`` (dotted) only matters to training and is ignored for inference."""
    return _under(key, TRAINING_ONLY) and not _under(key, USED_FOR_INFERENCE)


def canonical_key(key: str) -> str:
    """The current BiaPy name of ``key`` (older 3.x names are mapped onto the newer ones)."""
    key = key.strip()
    for old, new in ALIASES.items():
        if key == old or key.startswith(old + "."):
            return new + key[len(old) :]
    return key


def suggest(key: str) -> str | None:
    """The nearest valid dotted key to ``key``, or None."""
    names = list(LEAVES) + sorted(SECTIONS) + list(ALIASES)
    match = difflib.get_close_matches(key.upper(), names, n=1, cutoff=0.6)
    if match:
        return match[0]
    last = key.rsplit(".", 1)[-1].upper()
    tails = [n for n in LEAVES if n.rsplit(".", 1)[-1] == last]
    return tails[0] if len(tails) == 1 else None


def _where(source: Path | str | None, line: int | None) -> str:
    if source is None:
        return ""
    return f" in {source}" + (f" line {line}" if line else "")


def _unknown_key_error(key: str, source: Path | str | None, line: int | None) -> ConfigError:
    hint = suggest(key)
    did_you_mean = f" Did you mean '{hint}'?" if hint else ""
    return ConfigError(
        f"Unknown configuration key '{key}'{_where(source, line)}.{did_you_mean} "
        f"Fix or remove the key: only the configuration keys of BiaPy {SUPPORTED_BIAPY_VERSIONS} "
        "are accepted."
    )


# --------------------------------------------------------------------------------------------
# value coercion
# --------------------------------------------------------------------------------------------


def _parse_literal(text: str) -> Any:
    """Python/YAML literal in a string (``"(16,16,16)"``, ``"1.E-4"``, ``"[1, 2]"``) or ``text``."""
    stripped = text.strip()
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return yaml.safe_load(stripped)
    except (yaml.YAMLError, *_VALUE_ERRORS):
        return text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_float(value: Any) -> float | object:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return _MISSING
    return _MISSING


def _as_sequence(value: Any) -> list[Any] | object:
    if isinstance(value, str):
        value = _parse_literal(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return _MISSING


def _elements_ok(items: list[Any], default: Sequence[Any]) -> bool:
    """Elements must be numbers where the default holds numbers, strings where it holds strings."""
    if not default:
        return True
    sample = default[0]
    if _is_number(sample):
        return all(_is_number(i) for i in items)
    if isinstance(sample, str):
        return all(isinstance(i, str) for i in items)
    if isinstance(sample, (list, tuple)):
        return all(isinstance(i, (list, tuple)) for i in items)
    return True


def _coerce_kind(value: Any, kind: str, default: Any) -> Any:
    """``value`` converted to ``kind`` (bool/int/float/str/tuple/list/anylist/none/any), else
    ``_MISSING``."""
    if kind == "any":
        return value
    if kind == "none":
        return None if value is None or value == "None" else _MISSING
    if kind == "bool":
        return value if isinstance(value, bool) else _MISSING
    if kind == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISSING
    if kind == "float":
        return _as_float(value)
    if kind == "str":
        return value if isinstance(value, str) else _MISSING
    items = _as_sequence(value)
    if kind == "anylist":
        return items
    sample = default if isinstance(default, (list, tuple)) else [default]
    if items is _MISSING or not _elements_ok(items, sample or ()):
        return _MISSING
    return tuple(items) if kind == "tuple" else items


def _kind_of(default: Any) -> str:
    if default is None:
        return "any"
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    if isinstance(default, tuple):
        return "tuple"
    return "list"


_KIND_WORDS = {
    "bool": "a boolean (True/False)",
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "tuple": "a tuple such as (1, 2)",
    "list": "a list such as [1, 2]",
    "anylist": "a list",
    "none": "None",
}


def coerce_value(
    key: str, value: Any, source: Path | str | None = None, line: int | None = None
) -> Any:
    """Validate ``value`` for the (canonical, known) leaf ``key`` and return it normalised.

    Raises ConfigError naming the key, the value and the expected type or allowed values.
    """
    default = LEAVES[key]
    kinds = FLEXIBLE.get(key, (_kind_of(default),))
    for kind in kinds:
        result = _coerce_kind(value, kind, default)
        if result is not _MISSING:
            break
    else:
        expected = " or ".join(_KIND_WORDS.get(k, k) for k in kinds)
        raise ConfigError(
            f"Configuration key '{key}'{_where(source, line)} has the value {value!r}, which is "
            f"not {expected}. Give {expected} (BiaPy's default is {default!r})."
        )
    _check_choices(key, result, source, line)
    return result


def _check_choices(key: str, value: Any, source: Path | str | None, line: int | None) -> None:
    allowed = CHOICES.get(key)
    if allowed is not None and isinstance(value, str) and value not in allowed:
        raise ConfigError(
            f"Configuration key '{key}'{_where(source, line)} has the value {value!r}; allowed "
            f"values are: {', '.join(repr(a) for a in allowed)}."
        )
    allowed_items = ELEMENT_CHOICES.get(key)
    if allowed_items is not None and isinstance(value, (list, tuple)):
        bad = [v for v in value if v not in allowed_items]
        if bad:
            raise ConfigError(
                f"Configuration key '{key}'{_where(source, line)} contains {bad!r}; allowed "
                f"items are: {', '.join(repr(a) for a in allowed_items)}."
            )


# --------------------------------------------------------------------------------------------
# YAML reading with line numbers
# --------------------------------------------------------------------------------------------


def _line_numbers(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """``{"A.B": line}`` (1-based) of every mapping key in a composed YAML document."""
    lines: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key_node, value_node in node.value:
        dotted = f"{prefix}{key_node.value}"
        lines[dotted] = key_node.start_mark.line + 1
        lines.update(_line_numbers(value_node, dotted + "."))
    return lines


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice (plain YAML loading keeps only the last value)."""

    def __init__(self, mapping: yaml.MappingNode, key: Any, first: int, second: int) -> None:
        super().__init__(f"the key {key!r} appears twice (lines {first} and {second})")
        self.mapping, self.key, self.first, self.second = mapping, key, first, second


class _StrictLoader(yaml.SafeLoader):
    """Safe loading that refuses a key repeated within one mapping, at any depth.

    Pure Python on purpose: libyaml (CSafeLoader) overflows the C stack on deeply nested input,
    where Python raises RecursionError.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            self._check_unique_keys(node)
        return super().construct_mapping(node, deep=deep)

    def _check_unique_keys(self, node: yaml.MappingNode) -> None:
        """Raise DuplicateKeyError for the first key written twice in ``node`` with another
        value; the same value written twice (as in one of BiaPy's own paper templates) only
        warns. Merge keys (``<<``) are YAML's own way of combining mappings and are left to the
        loader."""
        seen: dict[Any, tuple[int, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key not in seen:
                    seen[key] = (line, value_node)
                    continue
            except TypeError:  # an unhashable key: the loader itself refuses it
                continue
            first, first_value = seen[key]
            if self._same_value(first_value, value_node):
                log.warn(f"the key {key!r} is written twice with the same value (lines {first} "
                         f"and {line}); one is kept")
                continue
            raise DuplicateKeyError(node, key, first, line)

    def _same_value(self, a: yaml.Node, b: yaml.Node) -> bool:
        """True when two value nodes hold equal scalars (sections are never the same value)."""
        if not isinstance(a, yaml.ScalarNode) or not isinstance(b, yaml.ScalarNode):
            return False
        return bool(self.construct_object(a, deep=True) == self.construct_object(b, deep=True))


def _key_path(node: yaml.Node | None, target: yaml.Node, prefix: str = "") -> str | None:
    """Dotted path of the mapping ``target`` inside the document ``node`` ("" at the top)."""
    if node is target:
        return prefix
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            found = _key_path(value_node, target, f"{prefix}{key_node.value}.")
            if found is not None:
                return found
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _key_path(item, target, prefix)
            if found is not None:
                return found
    return None


def _parse_yaml(text: str) -> tuple[Any, dict[str, int]]:
    """Safe-load ``text`` once, keeping the node tree for the line numbers of the keys.

    Raises DuplicateKeyError (with the dotted path of the repeated key in ``key``) when a
    mapping repeats a key.
    """
    loader = _StrictLoader(text)
    node = None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        return data, _line_numbers(node)
    except DuplicateKeyError as dup:
        dup.key = f"{_key_path(node, dup.mapping) or ''}{dup.key}"
        raise
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The YAML mapping in ``path`` and the line of each dotted key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"Configuration file {path} does not exist. Give the path of a BiaPy YAML file."
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"Configuration file {path} is a folder; give the path of a BiaPy YAML file."
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Configuration file {path} is not UTF-8 text (byte {exc.start} cannot be decoded): "
            "give a BiaPy YAML file, saved as UTF-8."
        ) from None
    except OSError as exc:
        raise ConfigError(f"Configuration file {path} cannot be read ({exc}).") from None
    try:
        data, lines = _parse_yaml(text)
    except DuplicateKeyError as dup:
        raise ConfigError(
            f"Configuration file {path} sets the key '{dup.key}' twice, on line {dup.first} "
            f"and on line {dup.second}; YAML would silently keep only the last one. Keep one "
            "of them (merge the two blocks into one)."
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"Configuration file {path} is not valid YAML{where}: {problem}. "
            "Check the indentation and the ':' after each key."
        ) from None
    except _VALUE_ERRORS as exc:
        raise ConfigError(
            f"Configuration file {path} holds a value that cannot be read "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else exc!r}). Check "
            "for numbers with thousands of digits, deeply nested brackets or an alias (*name) "
            "that contains itself."
        ) from None
    if data is None:
        return {}, lines
    if not isinstance(data, dict):
        raise ConfigError(
            f"Configuration file {path} must hold a mapping of sections (SYSTEM:, PROBLEM:, "
            f"DATA:, ...), not a {type(data).__name__}."
        )
    return data, lines


# --------------------------------------------------------------------------------------------
# the Config object
# --------------------------------------------------------------------------------------------


class Config:
    """A resolved configuration: BiaPy's defaults, the user's file and the overrides.

    ``source``: the file it was read from (None for defaults only). ``user_keys``: canonical
    dotted keys the user set (file or overrides). ``ignored``: training-only keys present in the
    user's file (accepted, unused for inference).
    """

    def __init__(self, source: Path | None = None) -> None:
        self._values: dict[str, Any] = copy.deepcopy(DEFAULTS)
        self.source: Path | None = source
        self.user_keys: set[str] = set()
        self.ignored: list[str] = []
        #: notes on the older BiaPy spellings converted while loading
        self.conversions: list[str] = []
        self._extra: dict[str, Any] = {}

    # -- access ---------------------------------------------------------------------------

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """Value of the dotted ``key`` (older BiaPy names accepted); a section gives a dict copy.

        An unknown key raises ConfigError unless ``default`` is given.
        """
        name = canonical_key(key)
        node: Any = self._values
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                if name in self._extra:
                    return copy.deepcopy(self._extra[name])
                if default is not _MISSING:
                    return default
                raise _unknown_key_error(key, None, None)
            node = node[part]
        return copy.deepcopy(node) if isinstance(node, (dict, list)) else node

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def set(
        self, key: str, value: Any, *, source: Path | str | None = None, line: int | None = None
    ) -> None:
        """Set the dotted ``key`` to ``value`` after validating it (same rules as the file)."""
        name = canonical_key(key)
        if name in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"Configuration key '{name}'{_where(source, line)} is a section: give it "
                    f"sub-keys ({', '.join(sorted(self.get(name))[:6])}, ...), not {value!r}."
                )
            for sub, subvalue in value.items():
                self.set(f"{name}.{sub}", subvalue, source=source, line=line)
            return
        if name not in LEAVES:
            if self._accept_unknown_training_key(name, value):
                return
            raise _unknown_key_error(key, source, line)
        if is_training_only(name):
            self._set_training_value(name, value)
        else:
            self._store(name, coerce_value(name, value, source, line))
            _check_shape(self, name, source, line)
        self.user_keys.add(name)

    def _store(self, name: str, value: Any) -> None:
        *parents, last = name.split(".")
        node = self._values
        for part in parents:
            node = node[part]
        node[last] = value

    def _set_training_value(self, name: str, value: Any) -> None:
        """Training-only keys are not used: keep a well-typed value, else the raw one (older
        releases wrote some of them in other shapes, which inference never reads)."""
        try:
            value = coerce_value(name, value)
        except ConfigError:
            pass
        self._store(name, value)

    def _accept_unknown_training_key(self, name: str, value: Any) -> bool:
        """Unknown keys inside training-only sections (other releases' training options) are
        kept and listed with the ignored keys, never an error."""
        parents = name.split(".")[:-1]
        known_parent = next(
            (".".join(parents[:i]) for i in range(len(parents), 0, -1)
             if ".".join(parents[:i]) in SECTIONS),
            None,
        )
        if not is_training_only(name) or known_parent is None:
            return False
        self._extra[name] = value
        self.user_keys.add(name)
        return True

    def check_training_keys(self) -> None:
        """Training uses the training-only keys that inference ignores: none of the user's may be
        unknown (another release's option) or of the wrong type.

        Raises
        ------
        ConfigError
            Naming the first unknown key (with the nearest valid one) or badly typed value.
        """
        for name in sorted(self._extra):
            raise _unknown_key_error(name, self.source, None)
        for name in sorted(k for k in self.user_keys if is_training_only(k)):
            coerce_value(name, self.get(name), self.source)

    # -- export ---------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """The whole resolved configuration as a nested dict (a deep copy)."""
        out = copy.deepcopy(self._values)
        for name, value in self._extra.items():
            *parents, last = name.split(".")
            node = out
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = copy.deepcopy(value)
        return out

    def to_yaml(self) -> str:
        """The resolved configuration as nested YAML (tuples written as lists; loads back equal)."""
        return yaml.dump(_plain(self.as_dict()), Dumper=_Dumper, sort_keys=False, width=100)

    def __repr__(self) -> str:
        return f"Config(source={self.source!s}, user_keys={len(self.user_keys)})"


class _Dumper(yaml.SafeDumper):
    """Block-style sections, flow-style lists (``PADDING: [16, 16, 16]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


_Dumper.add_representer(list, _represent_list)


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so that safe_dump can write them."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# consistency of shapes with PROBLEM.NDIM
# --------------------------------------------------------------------------------------------

#: key -> number of items relative to the spatial dimensions (2 or 3); None: empty allowed.
_SHAPE_KEYS: dict[str, int] = {
    "DATA.PATCH_SIZE": 1,
    "DATA.TEST.PADDING": 0,
    "DATA.TEST.OVERLAP": 0,
}
_OPTIONAL_SHAPE_KEYS = ("DATA.TEST.RESOLUTION", "PROBLEM.SUPER_RESOLUTION.UPSCALING")


def _ndim(cfg: Config) -> int:
    return 3 if cfg.get("PROBLEM.NDIM") == "3D" else 2


def _check_shape(cfg: Config, key: str, source: Path | str | None, line: int | None) -> None:
    """Lengths and ranges of the tiling keys against PROBLEM.NDIM (only once NDIM is known)."""
    if key == "PROBLEM.NDIM":
        _adapt_unset_shapes(cfg)
        return
    value = cfg.get(key)
    ndim = _ndim(cfg)
    if key in _SHAPE_KEYS:
        want = ndim + _SHAPE_KEYS[key]
        if len(value) != want:
            layout = {
                "DATA.PATCH_SIZE": "(z, y, x, channels)" if ndim == 3 else "(y, x, channels)"
            }.get(key, "(z, y, x)" if ndim == 3 else "(y, x)")
            raise ConfigError(
                f"Configuration key '{key}'{_where(source, line)} is {value!r}: with "
                f"PROBLEM.NDIM {ndim}D it needs {want} values {layout}."
            )
    if key in _OPTIONAL_SHAPE_KEYS and tuple(value) not in ((), (-1,)) and len(value) != ndim:
        raise ConfigError(
            f"Configuration key '{key}'{_where(source, line)} is {value!r}: with PROBLEM.NDIM "
            f"{ndim}D it needs {ndim} values (z, y, x order), or leave it unset."
        )
    _check_ranges(key, value, source, line)


#: The most CPU threads SYSTEM.NUM_CPUS may ask for (torch takes a C int).
_MAX_CPUS = 4096


def _check_ranges(key: str, value: Any, source: Path | str | None, line: int | None) -> None:
    problem = None
    if key == "DATA.PATCH_SIZE" and not all(isinstance(v, int) and v > 0 for v in value):
        problem = "its values must be positive integers"
    if key == "DATA.TEST.PADDING" and not all(isinstance(v, int) and v >= 0 for v in value):
        problem = "its values must be integers >= 0 (pixels)"
    if key == "DATA.TEST.OVERLAP" and not all(0 <= v < 1 for v in value):
        problem = "its values must be fractions in [0, 1)"
    if key == "SYSTEM.NUM_CPUS" and not -1 <= value <= _MAX_CPUS:
        problem = f"it must be -1 (all cores) or a number of cores up to {_MAX_CPUS}"
    if problem:
        raise ConfigError(
            f"Configuration key '{key}'{_where(source, line)} is {value!r}: {problem}."
        )


def voxel_spacing(resolution: Any, ndim: int) -> tuple[float, ...]:
    """``DATA.TEST.RESOLUTION`` as the voxel size per spatial axis, in (z, y, x) order.

    Parameters
    ----------
    resolution : sequence of float, float or None
        The configured value; unset (BiaPy's ``(-1,)``, all -1, empty or None) means 1 per axis.
    ndim : int
        Number of spatial axes of the image it applies to.

    Returns
    -------
    tuple of float
        ``ndim`` positive sizes. Raises ConfigError for another length or a size <= 0.
    """
    if resolution is None:
        resolution = ()
    items = resolution if isinstance(resolution, (list, tuple)) else [resolution]
    values = tuple(float(v) for v in items)
    if not values or all(v == -1 for v in values):
        return (1.0,) * ndim
    if len(values) != ndim or min(values) <= 0:
        raise ConfigError(
            f"DATA.TEST.RESOLUTION is {tuple(items)!r}: for {ndim}D images give {ndim} positive "
            "values in (z, y, x) order, or leave it unset (-1,) for isotropic pixels."
        )
    return values


def _adapt_unset_shapes(cfg: Config) -> None:
    """Give PADDING/OVERLAP defaults the length of PROBLEM.NDIM when the user did not set them."""
    ndim = _ndim(cfg)
    for key in ("DATA.TEST.PADDING", "DATA.TEST.OVERLAP"):
        if key not in cfg.user_keys:
            cfg._store(key, (0,) * ndim)
    if "DATA.PATCH_SIZE" not in cfg.user_keys:
        size = cfg.get("DATA.PATCH_SIZE")
        spatial = size[:-1]
        cfg._store("DATA.PATCH_SIZE", (spatial[0],) * ndim + (size[-1],))


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def _flatten_user(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """User mapping -> ``[(canonical dotted key, value)]`` in file order, descending into the
    known sections; anything else (leaves, unknown keys) stays whole for ``Config.set``."""
    items: list[tuple[str, Any]] = []
    for name, value in data.items():
        dotted = canonical_key(f"{prefix}{name}")
        if isinstance(value, dict) and dotted in SECTIONS:
            items.extend(_flatten_user(value, dotted + "."))
        else:
            items.append((dotted, value))
    return items


def parse_override(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> (key, value parsed as YAML). Raises ConfigError when malformed."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"Override {text!r} is not of the form KEY=VALUE (e.g. --set DATA.TEST.PADDING="
            "'(16, 16)')."
        )
    try:
        value = yaml.load(raw, Loader=_StrictLoader) if raw.strip() else ""
    except DuplicateKeyError as dup:
        raise ConfigError(
            f"Override {text!r} sets the key {dup.key!r} twice; give each key once."
        ) from None
    except (yaml.YAMLError, *_VALUE_ERRORS):
        value = raw
    return key.strip(), value


def load_config(path: Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a BiaPy YAML file (or none), convert older BiaPy spellings as BiaPy does, merge it
    onto the defaults, apply ``KEY=VALUE`` overrides (converted the same way) and validate
    everything. Raises ConfigError on any problem."""
    source = Path(path) if path is not None else None
    cfg = Config(source)
    converted: dict[str, Any] = {}
    if source is not None:
        data, lines = _read_yaml(source)
        converted, notes = convert(data)
        cfg.conversions.extend(notes)
        _apply_user(cfg, converted, lines, source)
    parsed = [(text, *parse_override(text)) for text in overrides]
    parsed.sort(key=lambda item: canonical_key(item[1]) != "PROBLEM.NDIM")
    for text, key, value in parsed:
        tree, notes = convert(nested(key, value), context=converted)
        cfg.conversions.extend(notes)
        for name, item in _flatten_user(tree):
            cfg.set(name, item, source=f"--set {text}")
    _adapt_unset_shapes(cfg)
    for key in (*_SHAPE_KEYS, *_OPTIONAL_SHAPE_KEYS):
        _check_shape(cfg, key, "the resolved configuration", None)
    _report_conversions(cfg)
    _report_ignored(cfg)
    return cfg


def _report_conversions(cfg: Config) -> None:
    """Log once which older BiaPy spellings were converted (BiaPy's PRINT_OLD_KEY_CHANGES)."""
    if cfg.conversions:
        log.info("older BiaPy keys converted: " + "; ".join(dict.fromkeys(cfg.conversions)))


def _line_of(lines: Mapping[str, int], key: str, original: str) -> int | None:
    return lines.get(original) or lines.get(key)


def _apply_user(
    cfg: Config, data: Mapping[str, Any], lines: Mapping[str, int], source: Path
) -> None:
    """Set every key of the user's file, PROBLEM.NDIM first so that shapes can be checked."""
    originals = _original_names(data)
    items = _flatten_user(data)
    items.sort(key=lambda kv: kv[0] != "PROBLEM.NDIM")
    for key, value in items:
        line = _line_of(lines, key, originals.get(key, key))
        cfg.set(key, value, source=source, line=line)
        if is_training_only(key):
            cfg.ignored.append(key)


def _original_names(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """canonical dotted key -> dotted key as written in the file (to find its line)."""
    out: dict[str, str] = {}
    for name, value in data.items():
        written = f"{prefix}{name}"
        out[canonical_key(written)] = written
        if isinstance(value, dict):
            out.update(_original_names(value, written + "."))
    return out


def _report_ignored(cfg: Config) -> None:
    """Log once which training-only parts of the file are ignored; keys left at BiaPy's
    default (``TRAIN.ENABLE: false``) change nothing and are not listed; MODEL.* builds the
    network when MODEL.SOURCE is biapy (a BiaPy checkpoint), so it is not listed then."""
    if cfg.get("TRAIN.ENABLE"):
        return  # training uses them (what it does not implement is refused by config/support.py)
    groups: list[str] = []
    builds_network = cfg.get("MODEL.SOURCE") == "biapy"
    for key in cfg.ignored:
        if key in LEAVES and cfg.get(key) == LEAVES[key]:
            continue
        if builds_network and key.startswith("MODEL."):
            continue
        prefix = next(p for p in TRAINING_ONLY if key == p or key.startswith(p + "."))
        label = prefix if prefix in LEAVES else f"{prefix}.*"
        if label not in groups:
            groups.append(label)
    if groups:
        log.info(f"ignored for inference: {', '.join(groups)}")
