"""Command-line errors that lead with the problem: the message, the nearest real option name, the help command.

jsonargparse answers a mistyped option with the whole usage (some sixty lines of every Trainer option) above the one
line that matters. :class:`MferArgumentParser` prints that line, then, for an option a class does not accept
(``--data.init_args.image_sise``) or a subcommand does not know (``trainer.max_epoch`` in a config file), the
closest name it does accept, and the command that lists them all. ``JSONARGPARSE_DEBUG=1`` keeps jsonargparse's own
behaviour (an exception with the traceback).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

from lightning.pytorch.cli import LightningArgumentParser

#: "Problem with given class_path 'pkg.Class':" opens the errors of that class's arguments.
_CLASS_PATH = re.compile(r"Problem with given class_path '([\w.]+)'")
#: A keyword the class's signature does not have.
_NOT_ACCEPTED = re.compile(r"Option '([\w.]+)' is not accepted")
#: A key of a config file (or an option) the subcommand does not have: the full dotted name.
_UNKNOWN_OPTION = re.compile(r"does not accept option '([\w.]+)'")
#: A class with at most this many arguments has them listed when none is close to the rejected name.
_LISTED = 12
#: Options given on the command line that no parser action matches.
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.+)", re.IGNORECASE)


def _parameters(class_path: str) -> list[str]:
    """Keyword names of a class's ``__init__`` (empty when it cannot be imported)."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        signature = inspect.signature(cls.__init__)
    except (ImportError, AttributeError, TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in signature.parameters.values() if p.kind in kinds and p.name != "self"]


def _closest(name: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def suggestions(message: str, option_names: Iterable[str]) -> list[str]:
    """Hints ("did you mean ...") for the unknown names a jsonargparse error message reports.

    Args:
        message: the error message.
        option_names: every dotted option the parser knows (``trainer.max_epochs``, ``data``, ...), for names a
            subcommand or the command line rejects.

    Returns:
        One line per unknown name that has a close known one, e.g. ``'image_sise': did you mean 'image_size' (an
        argument of multimodal_fer.datamodules.SynthAffectDataModule)?``, or, for a class argument with none
        close, the class's arguments when it has few.
    """
    lines: list[str] = []
    class_path = ""
    for line in message.splitlines():
        if found := _CLASS_PATH.search(line):
            class_path = found.group(1)
        if (found := _NOT_ACCEPTED.search(line)) and class_path:
            parameters = _parameters(class_path)
            if close := _closest(found.group(1), parameters):
                lines.append(f"'{found.group(1)}': did you mean '{close}' (an argument of {class_path})?")
            elif parameters and len(parameters) <= _LISTED:
                lines.append(f"'{found.group(1)}': {class_path} accepts {', '.join(parameters)}")
    known = list(option_names)
    rejected = _UNKNOWN_OPTION.findall(message)
    if found := _UNRECOGNIZED.search(message):
        rejected += [word.lstrip("-").split("=", 1)[0] for word in found.group(1).split() if word.startswith("--")]
    for name in rejected:
        if close := _closest(name, known):
            lines.append(f"'{name}': did you mean '{close}'?")
    return list(dict.fromkeys(lines))


class MferArgumentParser(LightningArgumentParser):
    """LightningCLI's parser with short errors (see the module docstring)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        """Print the message, the nearest real option names and the help command; exit with status 2."""
        from jsonargparse._common import debug_mode_active

        if not self.exit_on_error or debug_mode_active():
            super().error(message, ex)
        parser: Any = getattr(ex, "subcommand_parser", None) or self
        names = [action.dest for action in parser._actions if getattr(action, "dest", None)]
        hints = "".join(f"hint: {line}\n" for line in suggestions(message, names))
        words = parser.prog.replace(" [options]", "").split()  # the program name as run: mfer, __main__.py, ...
        prog = " ".join(["mfer", *words[1:]])
        sys.stderr.write(f"error: {message}\n{hints}Every option of this command: {prog} --help\n")
        self.exit(2)
