"""A workflow step's output goes to its log (C-level output too); a user error is one clear line, exit status 1."""

import subprocess
import sys

SCRIPT = """
import os, sys
from oidyolo.errors import ConfigError
from oidyolo.runner import logged_step, warn
with logged_step(sys.argv[1], "demo_step"):
    print("from python")
    if sys.argv[2] == "warn":
        warn("class 'Polar bear' has no boxes in the validation split")
    os.write(2, b"from C code\\n")
    if sys.argv[2] == "fail":
        raise ConfigError("limit must be positive")
    if sys.argv[2] == "bug":
        raise KeyError("oops")
"""


def run(tmp_path, mode):
    script = tmp_path / "step.py"
    script.write_text(SCRIPT)
    log = tmp_path / "step.log"
    proc = subprocess.run([sys.executable, str(script), str(log), mode], capture_output=True, text=True, timeout=60)
    return proc, log.read_text()


def test_output_of_python_and_c_code_goes_to_the_log(tmp_path):
    proc, log = run(tmp_path, "ok")
    assert proc.returncode == 0
    assert "from python" in log and "from C code" in log
    assert proc.stdout == "" and proc.stderr == ""


def test_user_error_is_one_line_without_traceback(tmp_path):
    proc, log = run(tmp_path, "fail")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error in demo_step: limit must be positive"
    assert "error in demo_step: limit must be positive" in log and "Traceback" not in log


def test_a_bug_keeps_its_traceback(tmp_path):
    proc, log = run(tmp_path, "bug")
    assert proc.returncode == 1
    assert "KeyError: 'oops'" in log and "Traceback" in proc.stderr


def test_a_warning_reaches_the_console_and_the_log(tmp_path):
    proc, log = run(tmp_path, "warn")
    line = "warning: class 'Polar bear' has no boxes in the validation split"
    assert proc.returncode == 0 and proc.stderr.strip() == line  # only the warning: the rest went to the log
    assert line in log and "from python" in log
