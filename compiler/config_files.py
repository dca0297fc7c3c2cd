"""Reading a config file (TOML, YAML or JSON) into plain data, with bounded work.

Both config files (``--config``, ``--prune-config``) are read here, so every one gets the same
limits and messages:

* at most ``MAX_CONFIG_BYTES`` (1 MiB): a config is a few lines;
* UTF-8 text: another encoding is an error naming the byte offset;
* YAML through ``yaml.SafeLoader`` with aliases bounded: the document, with every alias
  expanded, may hold at most ``MAX_YAML_NODES`` nodes (an "alias bomb" of a few hundred bytes
  otherwise expands to gigabytes), and a recursive alias is an error;
* nesting deeper than Python's recursion limit, or integers beyond Python's digit limit, are
  errors, not tracebacks.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from .errors import NNForgeError, shown

MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_NODES = 100_000
SUFFIXES = (".toml", ".yaml", ".yml", ".json")


class ConfigError(NNForgeError):
    """A quantization/compression config key, value or layer name is invalid."""


def read_text(path: Path, what: str) -> str:
    """The file's text: at most ``MAX_CONFIG_BYTES``, UTF-8."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{what} {str(path)!r} must be at most {MAX_CONFIG_BYTES // 1024} KiB, "
                              f"not {size / 1024:,.0f} KiB")
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{what} {str(path)!r} must be a readable file, not {err.strerror or err}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} {str(path)!r} must be at most {MAX_CONFIG_BYTES // 1024} KiB, not more")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {str(path)!r} must be UTF-8 text, not bytes that do not decode "
                          f"(byte 0x{data[err.start]:02x} at offset {err.start})") from None


def load(path: Path, what: str = "config file") -> Any:
    """The data of a .toml/.yaml/.yml/.json file (None for an empty YAML file)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"{what} suffix must be one of {', '.join(SUFFIXES)}, not {path.suffix!r} ({str(path)!r})")
    try:
        is_file = path.is_file()
    except OSError as err:  # a name too long, a loop of links
        raise ConfigError(f"{what} must be an existing file, not {shown(str(path))} ({err.strerror or err})") from None
    if not is_file:
        raise ConfigError(f"{what} must be an existing file, not {str(path)!r}")
    text = read_text(path, what)
    kind = {".toml": "TOML", ".json": "JSON"}.get(suffix, "YAML")
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        return _yaml(text, path, what)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"{what} {str(path)!r} must be nested only a few levels deep, not beyond "
                          f"Python's recursion limit") from None
    except (ValueError, TypeError) as err:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ConfigError(f"{what} {str(path)!r} must be valid {kind}: {_first_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - yaml.YAMLError and its subclasses
        if type(err).__module__.startswith("yaml"):
            raise ConfigError(f"{what} {str(path)!r} must be valid {kind}: {_first_line(err)}") from None
        raise


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def _yaml(text: str, path: Path, what: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ConfigError("a YAML config needs PyYAML installed (pip install pyyaml),"
                          " or write the config as TOML or JSON") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()  # composing shares aliased nodes: cheap
        if node is None:
            return None
        _bounded(node, path, what)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _bounded(root, path: Path, what: str) -> None:
    """Raise unless ``root`` expands to at most MAX_YAML_NODES nodes and has no alias cycle."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{what} {str(path)!r} must not hold a recursive YAML alias (an anchor used "
                              f"inside itself)")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_YAML_NODES:
                raise ConfigError(f"{what} {str(path)!r} must expand to at most {MAX_YAML_NODES:,} YAML nodes "
                                  f"with its aliases, not more (an alias bomb?)")
        active.discard(key)
        sizes[key] = total
        return total

    size(root)
