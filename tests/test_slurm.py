"""The workflow through profiles/slurm. Without Slurm: the profile's dry run plans every job with the resources a user
gets. With root: a private single-node Slurm (tests/slurm/cluster.sh, one fake GPU) runs the demo workflow, and every
non-local job must have been a Slurm job, training must have been given the GPU, and the outputs must match a local
run of the same config."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, test_config

BASE = test_config()  # tests/configs/demo.yaml, as the local workflow test runs it
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
PROFILE = ROOT / "profiles" / "slurm"
LOCAL_RULES = {"demo_source", "fetch_catalog", "fetch_boxes", "download_images"}  # `localrules:` in rules/
SLURM_RULES = {
    "index_boxes",
    "select_class",
    "voc",
    "yolo_annotations",
    "anchors",
    "train",
    "evaluate",
}
SLURM_RULES |= {"dataset_report", "training_report"}
SLURM_TOOLS = {"sinfo", "squeue", "sacct", "sbatch", "scontrol", "srun", "scancel", "sacctmgr", "sshare", "salloc"}
SLURM_TOOLS |= {"sattach", "sbcast", "scrontab", "sdiag", "sprio", "sreport", "sstat", "strigger", "sview"}
RUN_TIMEOUT = 900  # s; a normal run takes about 3 min here. Snakemake never returns if job status queries keep failing.
NO_PLUGIN = importlib.util.find_spec("snakemake_executor_plugin_slurm") is None
needs_plugin = pytest.mark.skipif(NO_PLUGIN, reason='needs snakemake-executor-plugin-slurm (pip install -e ".[slurm]")')


def profile() -> dict:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml"), *args]  # fmt: skip


def demo_workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(BASE))
    return path


# --- without Slurm -------------------------------------------------------------------------------------------------


def test_profile_never_asks_gres_next_to_gpu():
    """The train rule asks `gpu=1`; a `gres` as well makes the plugin pass both --gres and --gpus, which sbatch
    rejects ("Invalid GRES specification")."""
    prof = profile()
    assert prof["executor"] == "slurm"
    resources = [prof.get("default-resources", {}), *prof.get("set-resources", {}).values()]
    assert not [r for r in resources if "gres" in r]


@needs_plugin
def test_dry_run_with_the_slurm_profile_needs_no_slurm(tmp_path):
    # A PATH with every program of this one except Slurm's: what a laptop without Slurm has.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for entry in os.environ["PATH"].split(os.pathsep):
        for prog in Path(entry).glob("*") if Path(entry).is_dir() else []:
            link = bin_dir / prog.name
            if prog.name not in SLURM_TOOLS and not link.exists() and os.access(prog, os.X_OK):
                link.symlink_to(prog)
    path = f"{Path(sys.executable).parent}{os.pathsep}{bin_dir}"
    assert not [tool for tool in SLURM_TOOLS if shutil.which(tool, path=path)]
    workdir = demo_workdir(tmp_path / "wd")
    cmd = snakemake_cmd(workdir, "--dry-run", "--profile", str(PROFILE))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PATH": path})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = {m[0]: m[1] for m in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", proc.stdout, re.M | re.S)}
    assert set(jobs) == SLURM_RULES | LOCAL_RULES | {"all"}
    train = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"resources: (.*)", jobs["train"])[1]))
    assert train["gpu"] == "1" and "gres" not in train and "gpu_model" not in train
    assert (train["cpus_per_task"], train["mem_mb"], train["runtime"]) == ("8", "32000", "1440")
    assert train["slurm_partition"] == "EDIT_ME"  # the placeholder a user must replace


# --- on a local Slurm ----------------------------------------------------------------------------------------------


def _why_no_cluster() -> str | None:
    if os.environ.get("OIDYOLO_SLURM_TEST") == "0":
        return "OIDYOLO_SLURM_TEST=0"
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs root on Linux: starts munged, slurmctld and slurmd (tests/slurm/cluster.sh)"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "Slurm is not installed and there is no apt-get to install it"
    if NO_PLUGIN:
        return 'needs snakemake-executor-plugin-slurm (pip install -e ".[slurm]")'
    return None


NO_CLUSTER = _why_no_cluster()
ON_SLURM = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(NO_CLUSTER is not None, reason=str(NO_CLUSTER)),
    pytest.mark.timeout(3000),  # waiting for the lock, cluster set-up (apt), a local and a Slurm run: each bounded
]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[Path]:
    """A running single-node Slurm; its state directory. One per machine: the config is /etc/slurm/slurm.conf."""
    with open("/tmp/oidyolo-slurm-test.lock", "w") as lock:
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip("another test session held the local Slurm for 10 min")
                time.sleep(2)
        state = tmp_path_factory.mktemp("slurm")
        start = subprocess.run([str(CLUSTER), "start", str(state)], capture_output=True, text=True, timeout=900)
        if start.returncode == 3:  # this machine cannot host it: no root, no packages, a foreign Slurm config
            pytest.skip(start.stderr.strip())
        assert start.returncode == 0, f"cluster.sh start failed:\n{start.stdout}\n{start.stderr}"
        try:
            yield state
        finally:
            subprocess.run([str(CLUSTER), "stop", str(state)], capture_output=True, timeout=120)


@dataclass
class SlurmRun:
    workdir: Path
    log: str
    seconds: float
    submitted: dict[str, str]  # Slurm job id -> rule, from snakemake's "submitted with SLURM jobid" lines
    jobs: dict[str, dict[str, str]]  # Slurm job id -> `scontrol show job` fields, for every job the cluster ran
    task_env: dict[str, dict[str, str]]  # "jobid.step" -> GPU variables each job step saw (the cluster's TaskProlog)


def scontrol_job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "-d", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return dict(re.findall(r"(\S+?)=(\S*)", out.stdout))


def cluster_overrides() -> list[str]:
    """The options a real cluster would not need: this one has a partition named debug, no accounts and no
    accounting database (sacct fails there and snakemake would wait forever), and it answers at once."""
    # --default-resources on the command line replaces the profile's whole list: pass it on with the partition changed
    resources = {**profile()["default-resources"], "slurm_partition": "debug"}
    args = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2", "--slurm-no-account"]
    args += ["--slurm-keep-successful-logs"]  # the test reads them; kept only on failure otherwise
    return [*args, "--default-resources", *(f"{k}={v}" for k, v in resources.items())]


def run_bounded(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run in its own process group and kill the whole group on timeout (snakemake's local jobs are children)."""
    pipe, merged = subprocess.PIPE, subprocess.STDOUT
    proc = subprocess.Popen(cmd, stdout=pipe, stderr=merged, text=True, env=env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{cmd[:6]}... did not finish in {timeout} s:\n{out[-5000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory) -> SlurmRun:
    workdir = demo_workdir(tmp_path_factory.mktemp("slurm_run"))
    # Without a CUDA_VISIBLE_DEVICES of our own, any value a job sees was set by Slurm for its GPU.
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    cmd = snakemake_cmd(workdir, "--profile", str(PROFILE), *cluster_overrides())
    started = time.monotonic()
    proc = run_bounded(cmd, env, RUN_TIMEOUT)
    seconds = time.monotonic() - started
    print(f"\nworkflow through Slurm: {seconds:.0f} s")
    assert proc.returncode == 0, proc.stdout[-8000:]
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: .*/slurm_logs/rule_(\w+?)/", proc.stdout))
    listed = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
    jobs = {job_id: scontrol_job(job_id) for job_id in listed.stdout.split()}
    task_env = {}
    for path in (cluster / "taskenv").glob("*.env"):
        task_env[path.name.removesuffix(".env")] = dict(line.split("=", 1) for line in path.read_text().splitlines())
    return SlurmRun(workdir, proc.stdout, seconds, submitted, jobs, task_env)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    workdir = demo_workdir(tmp_path_factory.mktemp("local_run"))
    started = time.monotonic()
    proc = run_bounded(snakemake_cmd(workdir, "--cores", "2"), dict(os.environ), RUN_TIMEOUT)
    print(f"\nthe same workflow run locally: {time.monotonic() - started:.0f} s")
    assert proc.returncode == 0, proc.stdout[-8000:]
    return workdir


def rule_of(job: dict[str, str]) -> str:
    """The rule a Slurm job ran: the plugin's --comment is rule_<name> or rule_<name>_wildcards_<values>."""
    return re.fullmatch(r"rule_(\w+?)(_wildcards_.*)?", job["Comment"])[1]


class TestOnLocalSlurm:
    pytestmark = ON_SLURM

    def test_every_job_but_the_downloads_ran_as_a_slurm_job(self, slurm_run):
        # The cluster is private to this session: its job list is everything this workflow submitted.
        assert Counter(map(rule_of, slurm_run.jobs.values())) == Counter(slurm_run.submitted.values())
        assert set(slurm_run.submitted.values()) == SLURM_RULES
        # per split (train, validation, test): select_class per class, its index and its voc; then one job each of
        # yolo_annotations, anchors, train, evaluate and the two reports
        per_split = len(BASE["classes"]) + 2
        assert len(slurm_run.submitted) == 3 * per_split + 6
        assert all(j["JobState"] == "COMPLETED" and j["ExitCode"] == "0:0" for j in slurm_run.jobs.values())
        # Snakemake ran the downloads itself ("localrule"), and submitted every other job ("rule")
        local = set(re.findall(r"^localrule (\w+):", slurm_run.log, re.M))
        remote = re.findall(r"^rule (\w+):", slurm_run.log, re.M)
        assert local == LOCAL_RULES | {"all"}
        assert len(remote) == len(slurm_run.submitted) and set(remote) == SLURM_RULES
        for rule in LOCAL_RULES:  # they did run, on this host
            assert list((slurm_run.workdir / "logs").glob(f"{rule}*")), rule
        slurm_logs = slurm_run.workdir / ".snakemake" / "slurm_logs"
        assert {p.name.removeprefix("rule_") for p in slurm_logs.iterdir()} == SLURM_RULES

    def test_jobs_got_the_resources_of_the_profile(self, slurm_run):
        for job in slurm_run.jobs.values():
            cpus = {"train": "8", "index_boxes": "2"}.get(rule_of(job), "1")  # the rules' `threads:`
            wanted = (cpus, "32000M", "1-00:00:00") if rule_of(job) == "train" else (cpus, "4000M", "01:00:00")
            assert (job["NumCPUs"], job["MinMemoryNode"], job["TimeLimit"]) == wanted, rule_of(job)
            assert job["Partition"] == "debug" and job["Account"] == "(null)"

    def test_the_training_job_was_given_the_gpu(self, slurm_run):
        train = [job_id for job_id, rule in slurm_run.submitted.items() if rule == "train"]
        assert len(train) == 1
        for job_id, job in slurm_run.jobs.items():
            gpu = job_id in train
            # asked (sbatch --gpus=1 -> TresPerJob) and allocated (the node's fake GPU -> JOB_GRES)
            wanted = ("gres:gpu:1", "gpu:fake:1") if gpu else (None, "(null)")
            assert (job.get("TresPerJob"), job["JOB_GRES"]) == wanted, rule_of(job)
            # inside: the batch script, and the srun step that runs the rule (snakemake, then the training script)
            for step in ("batch", "0"):
                seen = slurm_run.task_env[f"{job_id}.{step}"]
                assert seen.get("CUDA_VISIBLE_DEVICES") == ("0" if gpu else None), (rule_of(job), step, seen)
        assert "training on" in (slurm_run.workdir / "logs/train.log").read_text()  # the CPU here: TensorFlow-cpu

    def test_outputs_match_a_local_run(self, slurm_run, local_run):
        def files(root: Path, pattern: str) -> dict[str, bytes]:
            return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern)) if p.is_file()}

        for pattern in ("results/boxes/**/*", "results/select/**/*", "results/images/**/*.tsv", "results/voc/**/*",
                        "results/yolo/*.txt", "data/images/**/*.jpg", "results/model/model.json"):  # fmt: skip
            ours, theirs = files(slurm_run.workdir, pattern), files(local_run, pattern)
            assert ours and ours.keys() == theirs.keys(), pattern
            assert [name for name in ours if ours[name] != theirs[name]] == [], pattern

        # The model: training on the CPU is repeatable in one process layout but not promised across machines.
        model_files = {"trained_weights_stage_1.weights.h5", "trained_weights_final.weights.h5", "history.csv"}
        roots = (slurm_run.workdir, local_run)
        for root in roots:
            assert {p.name for p in (root / "results/model").glob("*") if p.is_file()} >= model_files

        def keys(value: object) -> object:
            return {k: keys(v) for k, v in value.items()} if isinstance(value, dict) else None

        ours, theirs = (json.loads((root / "results/eval/metrics.json").read_text()) for root in roots)
        assert keys(ours) == keys(theirs)
