"""The `tfprune` command line: `tfprune demo`, `tfprune prune-h5 ...`.

Also `python -m tfprune ...` (and `python -m tfprune.cli ...`).

Each subcommand is a module of this package (listed in `COMMANDS`) with
`register(subparsers)`, which adds its parser and sets `func`, the function that
runs it. Command modules import nothing heavy at module level (TensorFlow, Keras,
h5py are imported inside `func`), and the console entry points import the
`tfprune` package lazily (see its docstring), so `--help`, `--version` and argument
errors answer without loading TensorFlow. A command module that fails to import is
an error, never a silently missing command.

Conventions every command gets from `Parser` (the class of every parser here):

- abbreviated or misspelled flags are rejected, naming the flag and the closest
  real one (`allow_abbrev=False`, whatever a command passes);
- every option's help shows its default (`HelpFormatter`);
- a user error is one line on stderr, `tfprune CMD: error: ...`, exit status 2.
  Errors raised by a command (ValueError, TypeError, OSError, RuntimeError) are
  printed the same way; set `TFPRUNE_DEBUG=1` to see the traceback instead.

Console hygiene: unless `TF_CPP_MIN_LOG_LEVEL` is set, it is set to 2 before
TensorFlow is imported, and the native start-up lines that TensorFlow prints
before its logging is configured (absl's "All log messages before
absl::InitializeLog()...", CUDA-stub and CPU-feature notices, a failed cuInit on a
machine without a GPU) are dropped from stderr while TensorFlow is imported. Any
other output of that import is passed through unchanged.
"""

import argparse
import contextlib
import difflib
import importlib
import os
import re
import sys
import tempfile
import warnings

__all__ = [
    "main",
    "build_parser",
    "COMMANDS",
    "Parser",
    "HelpFormatter",
    "fraction",
    "positive_int",
    "nonnegative_int",
    "existing_path",
    "output_directory",
    "quiet_native_output",
]

# Module names in tfprune.cli, in the order `tfprune --help` lists them.
COMMANDS = ("demo", "prune_h5", "export", "inspect", "report", "sweep", "sensitivity")


# --------------------------------------------------------------------- parsing


class HelpFormatter(argparse.HelpFormatter):
    """Appends `(default: X)` to an option's help unless it already says it, or the
    option has no meaningful default (None, a flag's False, required options)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            "%(default)" in text
            or "default" in text.lower()
            or not action.option_strings
            or action.required
            or any(action.default is v for v in (None, False, True, argparse.SUPPRESS))
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` with tfprune's conventions (module docstring)."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        message = " ".join(str(message).split())
        hint = _closest_option(self, message)
        self.exit(2, f"{self.prog}: error: {message}{hint} (see `{self.prog} --help`)\n")


class _SubcommandParser(Parser):
    """A subcommand rejects unknown arguments itself, so the message names the
    subcommand and can suggest one of its own flags."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def _closest_option(parser, message):
    match = re.match(r"unrecognized arguments: (\S+)", message)
    if not match or not match.group(1).startswith("-"):
        return ""
    flag = match.group(1).split("=", 1)[0]
    options = [o for o in parser._option_string_actions if o.startswith("--")]
    close = difflib.get_close_matches(flag, options, n=1, cutoff=0.6)
    prefixed = [o for o in options if o.startswith(flag)]
    best = close or prefixed[:1]
    return f" (did you mean {best[0]}?)" if best else ""


# Argument types: errors name the value; argparse adds the flag.


def fraction(text):
    """A float in [0, 1): `0.9` means 90%."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number in [0, 1), e.g. 0.9 for 90%. Received: {text!r}") from None
    if not 0.0 <= value < 1.0:
        hint = f" (did you mean {value / 100:g}?)" if 1.0 <= value < 100.0 else ""
        raise argparse.ArgumentTypeError(
            f"must be in [0, 1), a fraction: 0.9 means 90%{hint}. Received: {text}")
    return value


def _integer(text, minimum):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer. Received: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}. Received: {value}")
    return value


def positive_int(text):
    """An integer >= 1."""
    return _integer(text, 1)


def nonnegative_int(text):
    """An integer >= 0."""
    return _integer(text, 0)


def existing_path(text):
    """A file or directory that exists."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such file or directory. Received: {text!r}")
    return text


def output_directory(text):
    """A directory that exists or can be created, and is writable."""
    if not text:
        raise argparse.ArgumentTypeError("must be a directory path. Received: ''")
    path = os.path.abspath(text)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise argparse.ArgumentTypeError(
                f"must be a directory, but it is a file. Received: {text!r}")
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"directory is not writable. Received: {text!r}")
        return text
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(
            f"cannot be created: {parent!r} is a file. Received: {text!r}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"cannot be created: {parent!r} is not writable. Received: {text!r}")
    return text


class _Version(argparse.Action):
    """`--version`: tfprune's version and the installed TensorFlow / Keras, read from
    package metadata (nothing is imported)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show tfprune's version (and TensorFlow's and Keras's) and exit"):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def version_text():
    from importlib import metadata

    import tfprune

    def installed(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    python = ".".join(map(str, sys.version_info[:3]))
    return (f"tfprune {tfprune.__version__} (Python {python}, tensorflow "
            f"{installed('tensorflow')}, keras {installed('keras')})")


def build_parser():
    parser = Parser(
        prog="tfprune",
        description="Magnitude pruning for Keras 3 on TensorFlow.",
        epilog="Run `tfprune COMMAND --help` for a command's options. "
        "Set TFPRUNE_DEBUG=1 to see tracebacks.",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_SubcommandParser)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


# --------------------------------------------------------------- console hygiene

# Lines TensorFlow's native code prints while it is imported, before its logging
# is configured (TF_CPP_MIN_LOG_LEVEL cannot hide them): absl's pre-init notice and
# INFO/WARNING lines (dropped at log level >= 1 / >= 2), and the ERROR lines every
# machine without a GPU prints (dropped at level >= 2).
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")
_PRE_INIT = re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\)")
_CONTINUATION = re.compile(r"^To enable the following instructions:")
_BENIGN_ERRORS = re.compile(
    r"failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory|"
    r"computation placer already registered")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
# Informational lines the TFLite converter and interpreter print natively on every
# run (the int8 calibrator's settings, LiteRT's delegate notice): dropped at >= 1.
_CONVERTER_INFO = re.compile(
    r"^(fully_quantize: \d+, inference_type: \d+, |INFO: Created TensorFlow Lite XNNPACK "
    r"delegate for CPU\.)")


def _keep(line, level):
    if _PRE_INIT.match(line) or _CONTINUATION.match(line) or _CONVERTER_INFO.match(line):
        return level < 1
    match = _ABSL_LINE.match(line)
    if not match:
        return True
    severity = _SEVERITY[match.group(1)]
    if severity >= 2 and _BENIGN_ERRORS.search(line):
        return level < 2
    return severity >= level


@contextlib.contextmanager
def _native_stderr_filtered(level):
    """Send file descriptor 2 to a temporary file for the block, then write back the
    lines `_keep` keeps (Python's own stderr output included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [l for l in text.splitlines(keepends=True) if _keep(l, level)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _log_level():
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    except ValueError:
        return 0


def quiet_native_output():
    """A context manager for a command's heavy work: native INFO lines (the TFLite
    converter's and interpreter's) are dropped from stderr at TF_CPP_MIN_LOG_LEVEL
    >= 1 (2 unless the user set it); everything else is passed through when the
    block ends."""
    level = _log_level()
    if level < 1:
        return contextlib.nullcontext()
    return _native_stderr_filtered(level)


class _QuietLoader:
    def __init__(self, loader, level):
        self.loader = loader
        self.level = level

    def __getattr__(self, name):  # get_resource_reader, is_package, ...
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with _native_stderr_filtered(self.level):
            self.loader.exec_module(module)
            # Device discovery prints the GPU-less machine's cuInit error: do it here.
            module.config.list_physical_devices()


class _QuietTensorFlowFinder:
    """Meta-path hook: the first `import tensorflow` (by any command or library)
    runs under `_native_stderr_filtered`."""

    def __init__(self, level):
        self.level = level

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self.level)
        return spec


def _quiet_tensorflow():
    """Set the log level (unless the user did) and hook TensorFlow's import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        level = 0
    if level >= 1 and "tensorflow" not in sys.modules and not any(
            isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder(level))


def _one_line_warnings(message, category, filename, lineno, line=None):
    return f"{category.__name__}: {' '.join(str(message).split())}\n"


# ------------------------------------------------------------------------ main


def main(argv=None):
    """Run the command line; returns the exit status."""
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _one_line_warnings
    debug = os.environ.get("TFPRUNE_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"tfprune {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        if debug:
            raise
        print(f"tfprune {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
