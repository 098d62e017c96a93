"""The `tfprune` command line: parsing, help, errors, console hygiene, lazy import."""

import argparse
import os
import pathlib
import subprocess
import sys

import pytest

import tfprune
from tfprune import cli

# The console script sits beside the interpreter in a virtualenv (editable or wheel).
SCRIPT = os.path.join(os.path.dirname(sys.executable), "tfprune")
ENTRY_POINTS = {
    "console script": [sys.executable, SCRIPT],
    "python -m tfprune": [sys.executable, "-m", "tfprune"],
    "python -m tfprune.cli": [sys.executable, "-m", "tfprune.cli"],
}


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(extra)
    return env


def _run(argv, entry="python -m tfprune", timeout=300, **env):
    return subprocess.run(ENTRY_POINTS[entry] + list(argv), capture_output=True, text=True,
                          timeout=timeout, env=_env(**env))


def _subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name.replace("_", "-") in out
    assert "--version" in out


def test_a_command_module_that_fails_to_import_is_an_error(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + ("no_such_command",))
    with pytest.raises(ModuleNotFoundError, match="no_such_command"):
        cli.build_parser()


def test_every_option_of_every_command_has_help_that_shows_its_default():
    parser, commands = _subparsers()
    assert set(commands) == {n.replace("_", "-") for n in cli.COMMANDS}
    for name, sub in commands.items():
        assert isinstance(sub, cli.Parser) and sub.allow_abbrev is False, name
        text = sub.format_help()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = action.option_strings[0] if action.option_strings else action.dest
            assert action.help and action.help.strip(), f"{name} {label} has no help"
            assert (action.option_strings[0] if action.option_strings
                    else action.metavar or action.dest) in text
            meaningful = action.option_strings and not action.required and not any(
                action.default is v for v in (None, False, True, argparse.SUPPRESS))
            if meaningful:
                shown = sub._get_formatter()._get_help_string(action) % {
                    "default": action.default, "prog": sub.prog}
                assert "default" in shown.lower(), f"{name} {label}: default not shown"
    assert parser.allow_abbrev is False


def test_help_formatter_appends_defaults_only_where_meaningful():
    parser = cli.Parser(prog="x")
    parser.add_argument("--a", type=int, default=3, help="an int")
    parser.add_argument("--b", default=None, help="no default")
    parser.add_argument("--c", action="store_true", help="a flag")
    parser.add_argument("--d", default=1, help="already says it (default: one)")
    text = " ".join(parser.format_help().split())
    assert "an int (default: 3)" in text
    assert "no default (default" not in text and "a flag (default" not in text
    assert text.count("default: one") == 1


@pytest.mark.parametrize("argv,flag,suggestion", [
    (["demo", "--spars", "0.9"], "--spars", "--sparsity"),            # abbreviation
    (["demo", "--sparsit", "0.9"], "--sparsit", "--sparsity"),        # misspelling
    (["demo", "--output_dir", "x"], "--output_dir", "--output-dir"),  # underscore
    (["prune-h5", "f.h5", "--sparsity", "0.5", "--dry"], "--dry", "--dry-run"),
])
def test_abbreviated_or_misspelled_flags_are_rejected_naming_the_flag(
        argv, flag, suggestion, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and f"did you mean {suggestion}?" in err


def test_bad_demo_values_are_one_line_errors_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["--sparsity", "90"], "--sparsity", "Received: 90"),
        (["--sparsity", "abc"], "--sparsity", "Received: 'abc'"),
        (["--unit-sparsity", "1"], "--unit-sparsity", "Received: 1"),
        (["--samples", "-5"], "--samples", "Received: -5"),
        (["--samples", "0"], "--samples", "Received: 0"),
        (["--prune-epochs", "0"], "--prune-epochs", "Received: 0"),
        (["--dense-epochs", "1.5"], "--dense-epochs", "Received: '1.5'"),
        (["--output-dir", str(a_file)], "--output-dir", "it is a file"),
        (["--output-dir", str(a_file / "sub")], "--output-dir", "is a file"),
        (["--data", str(tmp_path / "nope")], "--data", "no such file"),
    ]
    for argv, flag, text in cases:
        with pytest.raises(SystemExit) as e:
            cli.main(["demo", "--output-dir", str(tmp_path / "out")] + argv)
        assert e.value.code == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("tfprune demo: error:"), err
        assert flag in err and text in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_sparsity_given_as_a_percentage_suggests_the_fraction():
    with pytest.raises(argparse.ArgumentTypeError, match=r"did you mean 0\.9\?"):
        cli.fraction("90")
    assert cli.fraction("0") == 0.0 and cli.fraction("0.5") == 0.5


def test_errors_raised_by_a_command_are_one_line(monkeypatch, capsys, tmp_path):
    def failing(args):
        raise ValueError("Argument `x` must be y.\nReceived: x=1")

    import tfprune.cli.demo

    monkeypatch.setattr(tfprune.cli.demo, "run", failing)
    assert cli.main(["demo", "--output-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "tfprune demo: error: Argument `x` must be y. Received: x=1\n"
    monkeypatch.setenv("TFPRUNE_DEBUG", "1")
    with pytest.raises(ValueError):
        cli.main(["demo", "--output-dir", str(tmp_path)])


@pytest.mark.parametrize("line,level,kept", [
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n", 2, False),
    ("I0000 00:00:1796117085.958986    7251 cudart_stub.cc:31] Could not find cuda drivers\n", 2, False),
    ("I0000 00:00:1796117085.958986    7251 cudart_stub.cc:31] Could not find cuda drivers\n", 0, True),
    ("W0000 00:00:1796117085.958986    7251 x.cc:1] a warning\n", 2, False),
    ("W0000 00:00:1796117085.958986    7251 x.cc:1] a warning\n", 1, True),
    ("E0000 00:00:1796117232.281357   18741 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n", 2, False),
    ("E0000 00:00:1796117232.281357   18741 other.cc:52] a real error\n", 2, True),
    ("To enable the following instructions: AVX2 FMA, in other operations, rebuild\n", 2, False),
    ("/x/y.py:3: DeprecationWarning: something\n", 2, True),
    ("fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32, "
     "output_inference_type: FLOAT32\n", 2, False),
    ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n", 1, False),
    ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n", 0, True),
])
def test_native_start_up_noise_filter(line, level, kept):
    assert cli._keep(line, level) is kept


def test_native_stderr_filter_passes_other_output_through(capfd):
    with cli._native_stderr_filtered(2):
        os.write(2, b"I0000 00:00:1.5    1 a.cc:1] noise\nkept line\n")
    assert capfd.readouterr().err == "kept line\n"


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_help_and_version_do_not_import_tensorflow(entry):
    for argv in (["--help"], ["--version"], ["demo", "--help"], ["prune-h5", "--help"],
                 ["demo", "--sparsity", "90"]):
        out = subprocess.run(ENTRY_POINTS[entry][:1] + ["-X", "importtime"]
                             + ENTRY_POINTS[entry][1:] + argv,
                             capture_output=True, text=True, timeout=120, env=_env())
        assert out.returncode in (0, 2), (entry, argv, out.stderr[-2000:])
        imported = [l.rsplit("|", 1)[-1].strip() for l in out.stderr.splitlines()
                    if l.startswith("import time:")]
        assert imported, "no -X importtime output"
        heavy = [m for m in imported if m.split(".")[0] in ("tensorflow", "keras", "h5py")]
        assert not heavy, (entry, argv, heavy[:5])
    version = subprocess.run(ENTRY_POINTS[entry] + ["--version"], capture_output=True,
                             text=True, timeout=120, env=_env())
    assert version.stdout.startswith(f"tfprune {tfprune.__version__} (Python ")
    assert "tensorflow 2." in version.stdout and "keras 3." in version.stdout


@pytest.mark.slow
def test_plain_import_is_eager_and_registers_for_load_model(tmp_path):
    # `import tfprune` in a script, and in a module run with `python -m` (whose
    # package is located while sys.argv[0] is "-m"): both eager, load_model works.
    import keras

    model = tfprune.prune_low_magnitude(keras.Sequential([keras.Input((4,)),
                                                         keras.layers.Dense(3)]))
    path = tmp_path / "pruned.keras"
    model.save(path)
    check = ("import sys, keras, tfprune\n"
             "assert 'tensorflow' in sys.modules and not tfprune._LAZY\n"
             f"m = keras.models.load_model({str(path)!r})\n"
             "print(type(m.layers[0]).__name__)\n")
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("import tfprune\n")
    (tmp_path / "mypkg" / "__main__.py").write_text(check)
    (tmp_path / "script.py").write_text(check)
    for argv in (["script.py"], ["-m", "mypkg"], ["-c", check]):
        out = subprocess.run([sys.executable] + argv, capture_output=True, text=True,
                             timeout=300, cwd=tmp_path, env=_env(PYTHONPATH=os.getcwd()))
        assert out.returncode == 0, (argv, out.stderr[-2000:])
        assert out.stdout.strip() == "PruneLowMagnitude"


@pytest.mark.slow
def test_lazy_package_resolves_public_names_on_first_access():
    code = ("import sys\nsys.argv = ['-m']\nsys.orig_argv = [sys.executable, '-m', 'tfprune']\n"
            "import tfprune\n"
            "assert tfprune._LAZY and 'tensorflow' not in sys.modules\n"
            "f = tfprune.shrink\n"
            "assert callable(f) and 'tensorflow' in sys.modules\n"
            "assert tfprune.sparsity.keras.ConstantSparsity is tfprune.ConstantSparsity\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=_env())
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.slow
def test_a_user_error_after_tensorflow_is_imported_is_exactly_one_line(tmp_path):
    # prune-h5 imports Keras (so TensorFlow) before it finds the file missing:
    # no TensorFlow/absl/CUDA line may reach the console.
    for entry in ("console script", "python -m tfprune"):
        out = _run(["prune-h5", str(tmp_path / "missing.keras"), "--sparsity", "0.5"], entry)
        assert out.returncode == 2
        assert out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith("tfprune prune-h5: error:") and "missing.keras" in out.stderr


README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _readme_section(title):
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start:end if end > 0 else None]


def test_readme_synopsis_lists_every_command_and_option():
    section = _readme_section("Command line")
    _, commands = _subparsers()
    for name, sub in commands.items():
        assert f"tfprune {name} " in section, name
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert option in section, f"README synopsis lacks {name} {option}"
    assert "--version" in section
