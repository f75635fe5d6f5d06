"""The command line, run as users run it: ``python -m oidyolo ...`` in a subprocess."""

import subprocess
import sys

from conftest import APPLE, ORANGE, V6_COLUMNS, make_jpeg, v6_row, write_csv


def oidyolo(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "oidyolo", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_classes_lists_matches_with_subclasses():
    proc = oidyolo("classes", "fruit")
    assert proc.returncode == 0
    first = proc.stdout.splitlines()[0].split("\t")
    assert first[:2] == ["Fruit", "/m/02xwb"] and "Apple" in first[2] and "Banana" in first[2]
    assert any(line.startswith("Grapefruit\t") for line in proc.stdout.splitlines())


def test_classes_typo_fails_with_suggestions_and_no_traceback():
    proc = oidyolo("classes", "Orang3")
    assert proc.returncode == 2
    assert "Did you mean: Orange" in proc.stderr and "Traceback" not in proc.stderr


def test_select_and_download_from_the_command_line(tmp_path):
    ids = [f"{i:016x}" for i in range(0xF0, 0xF6)]
    rows = [v6_row(i, APPLE if n % 2 else ORANGE) for n, i in enumerate(ids)]
    csv = write_csv(tmp_path / "train.csv", V6_COLUMNS, rows)
    for i in ids:
        make_jpeg(tmp_path / "bucket" / "train" / f"{i}.jpg")
    proc = oidyolo("select", str(csv), "--class", "apple", "--limit", "2", "--out", str(tmp_path / "Apple.csv"))
    assert proc.returncode == 0, proc.stderr
    assert "selected 2 images" in proc.stderr
    proc = oidyolo(
        "download",
        str(tmp_path / "Apple.csv"),
        "--split",
        "train",
        "--url",
        str(tmp_path / "bucket"),
        "--store",
        str(tmp_path / "store"),
        "--manifest",
        str(tmp_path / "m.tsv"),
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "store" / "train").glob("*.jpg"))) == 2


def test_bad_filter_argument_is_a_clear_error(tmp_path):
    csv = write_csv(tmp_path / "t.csv", V6_COLUMNS, [])
    proc = oidyolo(
        "select", str(csv), "--class", "Apple", "--filter", "IsOccluded", "--index", str(tmp_path / "idx"),
        "--out", str(tmp_path / "x.csv"),
    )  # fmt: skip
    assert proc.returncode == 2 and "ATTRIBUTE=VALUES" in proc.stderr
    assert not (tmp_path / "idx").exists()  # refused before any work: no index built


def test_data_wing_never_imports_tensorflow():
    code = (
        "import sys, oidyolo.cli, oidyolo.workflow, oidyolo.runner\n"
        "import oidyolo.data.boxes, oidyolo.data.select, oidyolo.data.download, oidyolo.data.voc\n"
        "import oidyolo.data.yolo_lines, oidyolo.data.demo, oidyolo.data.anchors, oidyolo.data.catalog\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_select_through_an_index_built_on_first_use(tmp_path):
    """``--index DIR`` builds the CSV's index once; later selections read it (the same CSV as without it), and an
    index of another file is refused with the way out, not silently used."""
    ids = [f"{i:016x}" for i in range(0xF0, 0xFC)]
    csv = write_csv(
        tmp_path / "train.csv", V6_COLUMNS, [v6_row(i, APPLE if n % 3 else ORANGE) for n, i in enumerate(ids)]
    )
    plain = oidyolo("select", str(csv), "--class", "Apple", "--out", str(tmp_path / "plain.csv"))
    assert plain.returncode == 0, plain.stderr
    index = tmp_path / "idx"
    for name in ("Apple", "Orange"):
        proc = oidyolo(
            "select", str(csv), "--class", name, "--index", str(index), "--out", str(tmp_path / f"{name}.csv")
        )
        assert proc.returncode == 0, proc.stderr
        assert ("indexing" in proc.stderr) == (name == "Apple")  # built once
    assert (tmp_path / "Apple.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()
    assert "selected 4 images" in proc.stderr  # Orange
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # its spill folder is gone
    with open(csv, "a") as fh:
        fh.write(v6_row(f"{0xFD:016x}", APPLE) + "\n")
    proc = oidyolo("select", str(csv), "--class", "Apple", "--index", str(index), "--out", str(tmp_path / "x.csv"))
    assert proc.returncode != 0 and "built for another file" in proc.stderr and "delete it to rebuild" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_option_of_every_command_is_explained_with_its_default():
    """``--help`` is the manual most users read: no option without a line of help, and each default shown."""
    import argparse

    from oidyolo.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.help, f"{name} {'/'.join(action.option_strings) or action.dest}: no help"
    proc = oidyolo("download", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())  # argparse wraps lines
    assert "concurrent downloads (default: 32)" in text and "(default: None)" not in text


def test_train_help_states_the_defaults_training_uses():
    """The train options' help quotes TrainConfig's defaults (the parser can't import them: that loads TensorFlow)."""
    import argparse

    from oidyolo.cli import build_parser
    from oidyolo.yolo.train import TrainConfig

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {a.dest: a.help for a in sub.choices["train"]._actions}
    cfg = TrainConfig()
    for dest, value in [("variant", cfg.variant), ("input_size", cfg.input_size[0]), ("epochs", cfg.epochs),
                        ("batch_size", cfg.batch_size), ("learning_rate", cfg.learning_rate)]:  # fmt: skip
        shown = " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
        assert helps[dest].endswith(f"default without either: {shown})"), (dest, helps[dest])
    assert cfg.input_size[0] == cfg.input_size[1] and cfg.steps_per_epoch is None
