"""One scaffold for the command-line mains: flags generated from settings dataclasses, one way to end a run.

Like transformers' `HfArgumentParser` (the one run_qa.py uses), every field of a settings dataclass
becomes a flag of the same name, `--<field name>`, with the field's default, its type and the help
in `field(metadata={"help": ...})`:

- `bool` becomes a `store_true` flag (its default must be False);
- `X | None` is an optional flag of type X (default None);
- `int`, `float`, `str`, `Path` are converted by argparse (a bad number is a usage error);
- `list[X]` takes one or more values (`nargs="+"`), or, with `"repeatable": True`, one per repetition;
- a field without a default is a required flag.

Optional metadata keys: `help`; `choices`; `metavar`; `aliases` (more option strings); `hidden` (the flag
works but `--help` does not show it); `group` (the title of the help section it appears in); `parse`
(a function from the flag's text to the value, e.g. `modes.parse_mode_list`; its ValueError becomes a
usage error with its message); `default_text` (the default as typed on a command line, a string or a
function returning one, converted like a typed value; for fields whose default is not text);
`repeatable`; `flag: False` (the field is no flag: it keeps its default or is passed by the main).

The parser also holds the run policy, so every main ends the same way:

- `build` makes a settings object from the parsed flags; a ValueError raised while building it (the
  settings check themselves in `__post_init__`) ends as a usage error: "prog: error: <message>", exit 2;
- `run` configures logging (the main's `LogSetup`, once), runs the main's body, turns a `UsageError`
  into that same usage error and a known run-time error into "error: <message>" on stderr, exit 2;
- `output_folder` checks an output folder before the work; `write_output_files` publishes a run's
  files all together or not at all (`infra.output_files`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cpu_inference_helpers.infra.cli_logging import QUIET, LogSetup
from cpu_inference_helpers.infra.output_files import OutputDirError, prepare_output_dir, staged_outputs

Settings = TypeVar("Settings")

#: What a main reports as "error: <message>" (exit 2) unless it names its own: files, the Hub and output
#: folders (OSError), a run that failed (RuntimeError), data or a model that cannot be used (ValueError).
RUN_TIME_ERRORS: tuple[type[BaseException], ...] = (OSError, RuntimeError, ValueError)

#: The value types argparse converts itself; any other needs a "parse" function in the field's metadata.
SCALAR_TYPES = (int, float, str, Path)

#: What an output file is given as: its text, its bytes, or a function that writes it to the path it is given.
OutputContent = str | bytes | Callable[[Path], object]


class UsageError(ValueError):
    """A flag or a combination of flags is wrong: inside `DataclassArgumentParser.run` it ends as a usage error."""


def _optional_type(annotation: Any) -> Any:
    """X for `X | None` / `Optional[X]`, else the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` for argparse: its ValueError's message becomes the usage message ("argument --x: <message>")."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _field_default(field: dataclasses.Field) -> Any:
    """The field's default (its factory's product), or dataclasses.MISSING."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def argument_options(field: dataclasses.Field, annotation: Any) -> dict[str, Any]:
    """The `add_argument` keywords of one dataclass field (see the module docstring for the rules)."""
    meta = field.metadata
    options: dict[str, Any] = {"help": argparse.SUPPRESS if meta.get("hidden") else meta.get("help")}
    value_type = _optional_type(annotation)
    default = _field_default(field)
    parse = meta.get("parse")
    if value_type is bool and parse is None:
        if default is not False:
            raise TypeError(f"{field.name}: a bool field becomes a store_true flag and must default to False")
        return {**options, "action": "store_true", "default": False}
    options.update({key: meta[key] for key in ("choices", "metavar") if key in meta})
    if parse is not None:
        options["type"] = _argument_type(parse)
    elif typing.get_origin(value_type) is list:
        (item_type,) = typing.get_args(value_type) or (str,)
        options["type"] = item_type
        if meta.get("repeatable"):
            options["action"] = "append"
        else:
            options["nargs"] = "+"
    elif value_type in SCALAR_TYPES:
        options["type"] = value_type
    else:
        raise TypeError(f"{field.name}: no flag for type {value_type!r}: give a 'parse' function in its metadata")
    if "default_text" in meta:
        default = meta["default_text"]() if callable(meta["default_text"]) else meta["default_text"]
    if options.get("action") == "append" and default is not dataclasses.MISSING:
        default = None  # argparse appends to a given default; `build` puts the field's own default back
    if default is dataclasses.MISSING:
        options["required"] = True
    else:
        options["default"] = default
    return options


class DataclassArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose flags come from settings dataclasses, and which ends every main the same way.

    `DataclassArgumentParser(Settings, Flags, prog=..., description=...)` adds one flag per field of each
    dataclass (in order); the keywords are ArgumentParser's, with RawDescriptionHelpFormatter and
    allow_abbrev=False as defaults (a flag is spelled out in full). Subcommands
    (`add_subparsers().add_parser(...)`) are DataclassArgumentParsers too.
    """

    def __init__(self, *dataclass_types: type, **parser_options: Any) -> None:
        parser_options.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        parser_options.setdefault("allow_abbrev", False)
        super().__init__(**parser_options)
        self.dataclass_types: list[type] = []
        self.commands: dict[str, DataclassArgumentParser] = {}
        self._groups: dict[str, argparse._ArgumentGroup] = {}
        self._subparsers: argparse._SubParsersAction | None = None
        for dataclass_type in dataclass_types:
            self.add_dataclass(dataclass_type)

    def add_dataclass(self, dataclass_type: type, *, title: str | None = None, exclude: Sequence[str] = (),
                      groups: Mapping[str, str] | None = None) -> None:
        """Add a flag for every init field of `dataclass_type`, except those in `exclude` or marked `flag: False`.

        Args:
            dataclass_type: the settings class.
            title: the help section for its flags (default: the main list); a field's "group" overrides it.
            exclude: fields the main sets itself (passed to `build` as overrides).
            groups: field name -> help section, for classes whose metadata names none (library settings).

        A field whose flag an earlier class added already is not added again: both classes get its value.
        """
        hints = typing.get_type_hints(dataclass_type)
        known = {action.dest for action in self._actions}
        for field in dataclasses.fields(dataclass_type):
            if not field.init or field.name in exclude or field.metadata.get("flag", True) is False:
                continue
            if field.name in known:
                continue
            section = (groups or {}).get(field.name) or field.metadata.get("group") or title
            target = self._group(section) if section else self
            target.add_argument(f"--{field.name}", *field.metadata.get("aliases", ()),
                                **argument_options(field, hints[field.name]))
        self.dataclass_types.append(dataclass_type)

    def add_command(self, name: str, *dataclass_types: type, help_text: str) -> DataclassArgumentParser:
        """A subcommand, `prog <name> [flags]`, whose flags come from `dataclass_types`.

        The parsed namespace's `command` is the name; `parse_dataclasses` builds the chosen command's dataclasses.
        """
        if self._subparsers is None:
            self._subparsers = self.add_subparsers(dest="command", required=True)
        command = self._subparsers.add_parser(name, help=help_text)
        for dataclass_type in dataclass_types:
            command.add_dataclass(dataclass_type)
        self.commands[name] = command
        return command

    def _group(self, title: str) -> argparse._ArgumentGroup:
        if title not in self._groups:
            self._groups[title] = self.add_argument_group(title)
        return self._groups[title]

    def build(self, dataclass_type: type[Settings], namespace: argparse.Namespace, **overrides: Any) -> Settings:
        """`dataclass_type` from the parsed flags (and `overrides`); its ValueError becomes a usage error (exit 2)."""
        values = {field.name: getattr(namespace, field.name) for field in dataclasses.fields(dataclass_type)
                  if field.init and field.name not in overrides and hasattr(namespace, field.name)
                  and not (field.metadata.get("repeatable") and getattr(namespace, field.name) is None)}
        with self.usage_errors():
            return dataclass_type(**values, **overrides)

    def parse_dataclasses(self, argv: Sequence[str] | None = None) -> tuple[Any, ...]:
        """Parse `argv` (default: sys.argv[1:]) into one object per dataclass given to the parser, in order.

        With subcommands (`add_command`), the chosen command's dataclasses follow the parser's own.
        """
        namespace = self.parse_args(argv)
        chosen = self.commands.get(getattr(namespace, "command", None))
        parsers = [self] if chosen is None else [self, chosen]
        return tuple(parser.build(dataclass_type, namespace)
                     for parser in parsers for dataclass_type in parser.dataclass_types)

    @contextlib.contextmanager
    def usage_errors(self, *kinds: type[BaseException]) -> Iterator[None]:
        """Within the block, an error of `kinds` (default: ValueError) ends as "prog: error: <message>", exit 2."""
        caught = kinds or (ValueError,)
        try:
            yield
        except caught as error:
            self.error(str(error))

    def output_folder(self, folder: str | Path) -> Path:
        """Create `folder` and check it is writable, before the work; a folder that is not is a usage error."""
        with self.usage_errors(OutputDirError):
            return prepare_output_dir(folder)

    def run(self, body: Callable[[], int | None], *, log: LogSetup = QUIET,
            errors: tuple[type[BaseException], ...] = RUN_TIME_ERRORS) -> int:
        """Configure logging as `log` says, then run `body`; return its exit status (None: 0).

        A `UsageError` from the body ends as a usage error (exit 2); an error of `errors` is printed as
        "error: <message>" on stderr, without a traceback, and the status is 2; anything else propagates.
        """
        log.configure()
        try:
            status = body()
        except UsageError as error:
            self.error(str(error))
        except errors as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0 if status is None else status


def write_output_files(folder: str | Path, files: Mapping[str, OutputContent]) -> list[Path]:
    """Write every file in `folder`, or none: each is staged under a hidden name and all are renamed at the end.

    Args:
        folder: the output folder (created if missing).
        files: file name -> its text (UTF-8), its bytes, or a function that writes it to the path it is given.

    Returns:
        The paths written. If any content fails, the folder's previous files stay as they were.
    """
    folder = Path(folder)
    with staged_outputs(folder) as stage:
        for name, content in files.items():
            path = stage.path(name)
            if isinstance(content, bytes):
                path.write_bytes(content)
            elif isinstance(content, str):
                path.write_text(content, encoding="utf-8")
            else:
                content(path)
    return [folder / name for name in files]
