"""Reading a config: the YAML file (within limits), presets, ``--set`` overrides, paths relative to the file, and the
schema's check with every error's key path; and the resolved config written back as YAML."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from distillkit.config.reading import YamlLimitError, read_yaml
from distillkit.config.schema import Config, ConfigError
from distillkit.registry import suggest

__all__ = ["apply_overrides", "apply_preset", "dump_config", "load_config", "presets", "resolve_relative_paths"]


def _model_for(path: tuple[Any, ...], root: type[BaseModel] = Config) -> type[BaseModel] | None:
    model: Any = root
    for part in path:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        for c in list(candidates):
            candidates += list(getattr(c, "__args__", ()))
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _format_errors(error: ValidationError, source: str, root: type[BaseModel] = Config) -> str:
    lines = []
    for item in error.errors():
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and ("[" in p or p in ("float", "ScheduleConfig"))))
        path = ".".join(str(p) for p in loc)
        if item["type"] == "extra_forbidden":
            parent = _model_for(loc[:-1], root)
            known = sorted(parent.model_fields) if parent else []
            lines.append(f"{path}: unknown key.{suggest(str(loc[-1]), known)}"
                         + (f" Allowed here: {', '.join(known)}" if known else ""))
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{path or '(top level)'}: {message}")
    unique = list(dict.fromkeys(lines))
    return f"{source}: invalid config: " + "; ".join(unique)


def _parse_value(text: str) -> Any:
    try:
        return read_yaml(text)
    except YamlLimitError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (values parsed as YAML) to a raw config dict; returns a new dict."""
    result = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=3")
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = _parse_value(value)
    return result


def presets() -> dict[str, dict[str, Any]]:
    """The packaged presets (``src/distillkit/configs/presets/*.yaml``): name -> partial config."""
    folder = resources.files("distillkit") / "configs" / "presets"
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):  # type: ignore[attr-defined]
        if entry.name.endswith(".yaml"):
            found[entry.name[:-5]] = yaml.safe_load(entry.read_text())
    return found


def _merge_under(base: dict[str, Any], preset: dict[str, Any]) -> dict[str, Any]:
    """``preset`` with ``base`` on top: the config's own values win over the preset's."""
    merged = copy.deepcopy(preset)
    for key, value in base.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_under(value, merged[key])
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_preset(raw: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Expand a top-level ``preset: NAME`` into the preset's values, under the config's own ones."""
    if "preset" not in raw or raw["preset"] is None:
        return {k: v for k, v in raw.items() if k != "preset"}
    name = raw["preset"]
    available = presets()
    if name not in available:
        raise ConfigError(f"{source}: preset: unknown preset {name!r}.{suggest(str(name), list(available))} "
                          f"Available: {', '.join(available)}")
    values = {k: v for k, v in available[name].items() if k != "description"}
    return _merge_under({k: v for k, v in raw.items() if k != "preset"}, values)


def resolve_relative_paths(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The file paths of a config (``data.name`` when it is a path, every ``weights``) made absolute against the
    config file's folder, so a config means the same data from any working directory."""
    result = copy.deepcopy(raw)

    def fix(section: Any, key: str, only_paths: bool = False) -> None:
        if not isinstance(section, dict) or not isinstance(section.get(key), str):
            return
        value = section[key]
        if ":" in value.split("/")[0] or Path(value).is_absolute() or value.startswith("~"):  # scheme:, absolute, ~
            return
        if only_paths and not any(sep in value for sep in ("/", "\\", ".")):
            return  # a built-in name
        section[key] = str((folder / value).resolve())

    fix(result.get("data"), "name", only_paths=True)
    pairs = (result.get("data") or {}).get("pairs")
    if isinstance(pairs, dict):
        keys = ["path", "speech_cache"] + (["first", "second", "label"] if pairs.get("kind") == "folders" else [])
        for key in keys:
            fix(pairs, key)
    for role in ("teacher", "student"):
        fix(result.get(role), "weights")
    for assistant in (result.get("distill") or {}).get("assistants") or []:
        fix(assistant, "weights")
    datasets = (result.get("stream") or {}).get("datasets")
    if isinstance(datasets, list):
        holder = {str(k): v for k, v in enumerate(datasets)}
        for key in holder:
            fix(holder, key, only_paths=True)
        result["stream"]["datasets"] = list(holder.values())
    return result


def load_config(path: str | Path | None = None, *, overrides: list[str] | None = None,
                raw: dict[str, Any] | None = None, model: type[Any] = Config) -> Any:
    """Read, override and validate a config: a :class:`Config`, or the ``model`` of another kind of run (which
    resolves its own relative paths with a ``resolve_relative_paths(raw, folder)`` static method; presets are
    the comparison's).

    Raises:
        ConfigError: missing or unreadable file, invalid YAML, or schema errors (with key paths).
    """
    source = str(path) if path is not None else "config"
    if raw is None:
        if path is None:
            raise ConfigError("no config given")
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file not found: {file}")
        try:
            raw = read_yaml(file.read_text(), str(file))
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{file}: cannot read: {error}") from error
        except YamlLimitError as error:
            raise ConfigError(str(error)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a YAML mapping of sections (data, teacher, student, ...)")
    if path is not None:  # before the overrides: theirs are the shell's
        resolve = resolve_relative_paths if model is Config else model.resolve_relative_paths
        raw = resolve(raw, Path(path).parent)
    raw = apply_overrides(raw, overrides or [])
    if model is Config:
        raw = apply_preset(raw, source)
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_errors(error, source, model)) from None


def dump_config(config: BaseModel) -> str:
    """The resolved config as YAML (every default filled in): rerunning this file reproduces the run."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
