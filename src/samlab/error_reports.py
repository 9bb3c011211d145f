"""Short reports of what stops ``samlab fit | validate | test | predict``: the cause, the config key, the fix.

LightningCLI buries the cause of a failure in a long jsonargparse message (``Does not validate against any of the
Union subtypes ... Given value: Namespace(...)``) or mid-traceback. These functions turn such failures into a
:class:`~samlab.errors.ConfigError` whose last lines say what went wrong (naming the file), which config key to
change and how; :func:`samlab.cli.main` prints it without the traceback.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from samlab.errors import ConfigError, DataError

README_CHECKPOINTS = 'README.md, section "Checkpoints"'
"""Where the download addresses of the official weights are listed."""

_GROUPS = (
    ("lightning.pytorch.core.module", "LightningModule", "model"),
    ("lightning.pytorch.core.datamodule", "LightningDataModule", "data"),
    ("lightning.pytorch.trainer.trainer", "Trainer", "trainer"),
)


def exception_chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from (``__cause__``, else ``__context__``), outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and not any(current is seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def config_leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of a (jsonargparse) namespace or mapping, lists left whole."""
    items = vars(config).items() if hasattr(config, "__dict__") and not isinstance(config, Mapping) else None
    if items is None and isinstance(config, Mapping):
        items = config.items()
    if items is None:
        yield prefix, config
        return
    for key, value in items:
        if key.startswith("_") or key == "__path__":
            continue
        yield from config_leaves(value, f"{prefix}.{key}" if prefix else key)


def _failing_group(chain: list[BaseException]) -> str | None:
    """``"model"``, ``"data"`` or ``"trainer"``: the config group whose object was being built when it failed."""
    classes = []
    for module_name, class_name, group in _GROUPS:
        try:
            classes.append((getattr(importlib.import_module(module_name), class_name), group))
        except (ImportError, AttributeError):
            continue
    found = None
    for error in chain:
        traceback = error.__traceback__
        while traceback is not None:
            owner = traceback.tb_frame.f_locals.get("self")
            for cls, group in classes:
                if isinstance(owner, cls):
                    found = group
            traceback = traceback.tb_next
    return found


def _keys_holding_path(config: Any, path: str) -> list[str]:
    """Config keys whose value is ``path`` or, failing that, the longest folder that contains it."""
    leaves = [(key, value) for key, value in config_leaves(config) if isinstance(value, str) and value]
    exact = [key for key, value in leaves if Path(value) == Path(path)]
    if exact:
        return exact
    parents = [(len(value), key) for key, value in leaves if Path(value) in Path(path).parents]
    return [key for _, key in sorted(parents, reverse=True)[:1]]


def _where(error: BaseException) -> str:
    """``file:line`` of the innermost frame of ``error``'s traceback."""
    traceback = error.__traceback__
    if traceback is None:
        return ""
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return f"{traceback.tb_frame.f_code.co_filename}:{traceback.tb_lineno}"


def explain_build_error(error: BaseException, config: Any, command: str = "fit") -> ConfigError:
    """The :class:`ConfigError` of a failure while LightningCLI builds the model, data module or trainer.

    ``config``: the parsed config of the command (namespace or mapping); ``command``: the subcommand, for the help
    hint. The cause is the innermost :class:`DataError` of the exception chain (else the innermost exception);
    the key is the config entry holding the file the error names (else the failing group's entry).
    """
    chain = exception_chain(error)
    cause = next((e for e in reversed(chain) if isinstance(e, DataError)), chain[-1])
    group = _failing_group(chain)
    scope = getattr(config, group, None) if group and hasattr(config, group) else None
    subtree = config if scope is None else scope
    prefix = f"{group}." if scope is not None else ""
    if isinstance(cause, DataError):
        keys = [prefix + key for key in _keys_holding_path(subtree, cause.path)]
        key = keys[0] if keys else None
        if "checkpoint" in cause.message or (key or "").endswith("checkpoint"):
            given = f"--{key}=PATH" if key else "the checkpoint path"
            fix = (
                f"download the official weights ({README_CHECKPOINTS}) to {cause.path}, or give their local path "
                f"with {given} ({key or 'checkpoint'}: null starts from random weights)"
            )
        else:
            fix = (
                f"correct the path in {key or 'the config'}; `samlab data check --format FORMAT ROOT` lists every "
                "problem of a dataset folder"
            )
        return ConfigError(str(cause), key, fix, where=_where(cause))
    message = f"{type(cause).__name__}: {cause}"
    key = _key_named_in(message, subtree, prefix) or (group if group else None)
    what = {"model": "the model", "data": "the data module", "trainer": "the trainer"}.get(group or "", "the config")
    fix = f"change {key or 'the config'} (every key of {what}: samlab {command} --help, or --print_config)"
    return ConfigError(message, key, fix, where=_where(cause))


def _key_named_in(message: str, config: Any, prefix: str) -> str | None:
    """The first config key whose last part appears as a word in ``message`` (``val_transform``), or None."""
    keys = [key for key, _ in config_leaves(config)]
    best = None
    for key in keys:
        parts = key.split(".")
        for depth in range(len(parts), 0, -1):
            name = parts[depth - 1]
            if name in ("init_args", "class_path"):
                continue
            match = re.search(rf"\b{re.escape(name)}\b", message)
            if match and (best is None or match.start() < best[0]):
                best = (match.start(), prefix + ".".join(parts[:depth]))
            break
    return None if best is None else best[1]


def accepted_arguments(class_path: str) -> list[str]:
    """Names of the ``__init__`` arguments of ``class_path`` and, where it passes ``**kwargs`` on, its bases'."""
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for base in cls.__mro__:
        init = base.__dict__.get("__init__")
        if init is None:
            continue
        parameters = list(inspect.signature(init).parameters.values())[1:]
        names += [p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names


def explain_parse_error(message: str, known_keys: list[str], command: str = "fit") -> ConfigError | None:
    """The :class:`ConfigError` of a jsonargparse parse error ``message`` about a wrong key, or None if it is not one.

    Handles an argument a class does not take (``Option 'batchsize' is not accepted`` under ``Parser key "data"``,
    nested keys included) and an unrecognised top-level key (checked against ``known_keys``), with "did you mean"
    suggestions of the closest accepted names.
    """
    option = re.search(r"Option '([^']+)' is not accepted", message)
    if option:
        scopes = [(m.start(), "key", m.group(1)) for m in re.finditer(r'Parser key "([^"]+)"', message)]
        scopes += [(m.start(), "class", m.group(1)) for m in re.finditer(r"given class_path '([^']+)'", message)]
        parts, class_path = [], None
        for start, kind, value in sorted(scopes):
            if start > option.start():
                break
            if kind == "key":
                parts.append(value)
            else:
                class_path = value
                parts.append("init_args")
        if parts and parts[-1] != "init_args":
            parts.append("init_args")
        name = option.group(1)
        key = ".".join([*parts, name])
        accepted = accepted_arguments(class_path) if class_path else []
        close = difflib.get_close_matches(name, accepted, n=3, cutoff=0.6)
        owner = class_path.rpartition(".")[2] if class_path else "this class"
        cause = f"{key}: {owner} takes no argument {name!r}"
        if close:
            cause += f"; did you mean {' or '.join(repr(c) for c in close)}?"
            fix = f"write --{'.'.join([*parts, close[0]])}=... (or {close[0]}: under {'.'.join(parts)} in the YAML)"
        else:
            fix = f"use one of {owner}'s arguments: {', '.join(accepted)}" if accepted else "remove it"
        return ConfigError(cause, key, fix + f"; every key: samlab {command} --help")
    unknown = re.search(r"unrecognized arguments: (.+)", message, re.IGNORECASE)
    if unknown:
        names = [arg.lstrip("-").split("=")[0] for arg in unknown.group(1).split() if arg.startswith("--")]
        if not names:
            return None
        key = names[0]
        close = difflib.get_close_matches(key, known_keys, n=3, cutoff=0.6)
        cause = f"unknown key {key!r}" + (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "")
        fix = (f"write --{close[0]}=..." if close else "remove it") + f"; every key: samlab {command} --help"
        return ConfigError(cause, key, fix)
    return None
