#!/usr/bin/env bash
# A private single-node Slurm on localhost for the workflow's SLURM test (tests/test_slurm.py); usable by hand too.
#
#   tests/slurm/cluster.sh install          Debian packages (slurmctld slurmd slurm-client munge), if missing
#   tests/slurm/cluster.sh start  STATE     install if needed, then start munged, slurmctld, slurmd (STATE: a directory)
#   tests/slurm/cluster.sh stop   STATE     cancel this cluster's jobs, stop the daemons started by `start`
#   tests/slurm/cluster.sh status STATE
#
# Everything but the config lives in STATE (spool, logs, PIDs, its own munge key and socket; non-default ports). The
# config must be /etc/slurm/slurm.conf: the plugin's job step strips SLURM_CONF from the environment of the srun it
# starts inside each job. `start` writes it (with gres.conf) only where none exists or it is our own, and `stop`
# removes it; a Slurm or munge already on the machine is left alone. The node advertises one fake GPU (`gpu:fake:1`, a
# mknod device) and 8 CPUs / 64 GB, so the profile's training request fits unchanged; nothing is enforced (no
# cgroups). There is no accounting database: use `--slurm-status-command squeue` (MinJobAge keeps finished jobs in
# squeue), since snakemake waits forever on `sacct` without slurmdbd. Needs root.
# Exit status 3: this machine cannot host it (not root, no apt, install failed, a foreign Slurm config).
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
CTLD_PORT=${OIDYOLO_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${OIDYOLO_SLURMD_PORT:-16818}
DAEMONS=(slurmd slurmctld munged) # stop order
POLICY=/usr/sbin/policy-rc.d
CONF=/etc/slurm/slurm.conf
GRES=/etc/slurm/gres.conf
MARK="# written by oidyolo tests/slurm/cluster.sh"

die() { echo "cluster.sh: $1" >&2; exit "${2:-1}"; }
installed() {
  local prog
  for prog in slurmctld slurmd sbatch munged; do command -v "$prog" >/dev/null || return 1; done
}

install() {
  installed && return 0
  [ "$(id -u)" = 0 ] || die "installing Slurm needs root" 3
  command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get" 3
  # policy-rc.d keeps the packages' postinst from starting the system munge/slurm daemons; remove ours afterwards.
  local ours=0
  if [ ! -e "$POLICY" ]; then
    trap 'rm -f "$POLICY"' EXIT # also when apt fails or is interrupted
    printf '#!/bin/sh\nexit 101\n' >"$POLICY" && chmod +x "$POLICY" && ours=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends)
  apt+=(-o DPkg::Lock::Timeout=120 "${PACKAGES[@]}") # waits for another apt (e.g. .ci/run's) instead of failing
  if ! timeout 240 "${apt[@]}" >/dev/null; then
    timeout 120 apt-get update -qq || true # stale package lists: refresh once
    timeout 240 "${apt[@]}" >/dev/null || die "apt-get install ${PACKAGES[*]} failed" 3
  fi
  if [ "$ours" = 1 ]; then rm -f "$POLICY" && trap - EXIT; fi
  installed || die "installed ${PACKAGES[*]} but slurmctld/slurmd/sbatch/munged are still missing" 3
}

alive() { # PID file, expected process name: alive and still that program (not a reused PID)
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

write_config() {
  local s=$1
  mkdir -p "$s"/{etc,spool/ctld,spool/d,log,run,munge,taskenv} /etc/slurm
  chmod 700 "$s/munge"
  [ -e "$s/run/fakegpu0" ] || mknod "$s/run/fakegpu0" c 1 3 # a char device (like /dev/null) for gres.conf File=
  if [ ! -s "$s/munge/munge.key" ]; then
    dd if=/dev/urandom of="$s/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$s/munge/munge.key"
  fi
  # Runs in each task's environment just before the task: records the GPU variables each job step saw, by job and
  # step, so a test can check the GPU job was given CUDA_VISIBLE_DEVICES (and the others were not).
  cat >"$s/etc/task_prolog.sh" <<EOF
#!/bin/sh
env | grep -E '^(CUDA_VISIBLE_DEVICES|GPU_DEVICE_ORDINAL|SLURM_[A-Z_]*GPUS[A-Z_]*)=' \\
  >"$s/taskenv/\${SLURM_JOB_ID}.\${SLURM_STEP_ID:-batch}.env" 2>/dev/null
exit 0
EOF
  chmod 755 "$s/etc/task_prolog.sh"
  cat >"$CONF" <<EOF
$MARK for $s
ClusterName=oidyolo-test
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$s/munge/munge.socket
StateSaveLocation=$s/spool/ctld
SlurmdSpoolDir=$s/spool/d
SlurmctldPidFile=$s/run/slurmctld.daemon.pid
SlurmdPidFile=$s/run/slurmd.daemon.pid
SlurmctldLogFile=$s/log/slurmctld.log
SlurmdLogFile=$s/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=$s/etc/task_prolog.sh
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
# finished jobs stay in squeue for 10 min: snakemake's squeue status checks must still see them
MinJobAge=600
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 RealMemory=64000 Gres=gpu:fake:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  printf '%s\nNodeName=localhost Name=gpu Type=fake File=%s\n' "$MARK for $s" "$s/run/fakegpu0" >"$GRES"
}

wait_for() { # seconds, command...: poll until the command succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

node_idle() { timeout 5 sinfo -h -n localhost -o %T | grep -qx idle; }

settled() { # the node is idle, or a daemon died: no point waiting longer
  node_idle || ! alive "$1/slurmctld.pid" slurmctld || ! alive "$1/slurmd.pid" slurmd
}

ours() { # the config in /etc/slurm is absent or was written by us for STATE
  local f
  for f in "$CONF" "$GRES"; do
    [ ! -e "$f" ] || [ "$(head -n 1 "$f")" = "$MARK for $1" ] || return 1
  done
}

start() {
  local s=$1
  [ "$(id -u)" = 0 ] || die "a local Slurm needs root" 3
  install
  if alive "$s/slurmctld.pid" slurmctld && alive "$s/slurmd.pid" slurmd && node_idle; then
    timeout 5 sinfo
    return 0
  fi
  ours "$s" || die "$CONF or $GRES exists and is not this cluster's (its first line: $(head -n 1 "$CONF" 2>/dev/null));
  leaving it alone. A test cluster left by another STATE stops with: $0 stop OTHER_STATE" 3
  stop "$s" >/dev/null 2>&1 || true # half-started: clean up what we recorded
  rm -rf "$s/spool" "$s/taskenv" # a fresh job table each start
  write_config "$s"
  # setsid: the daemons outlive this script and get no signal meant for its caller; each PID is the program's own.
  local sock=$s/munge/munge.socket
  setsid /usr/sbin/munged --foreground --force --key-file="$s/munge/munge.key" --socket="$sock" \
    --pid-file="$s/run/munged.daemon.pid" --seed-file="$s/munge/munged.seed" --log-file="$s/log/munged.log" \
    </dev/null >"$s/log/munged.out" 2>&1 &
  echo $! >"$s/munged.pid"
  if ! wait_for 10 sh -c "timeout 5 munge -S '$sock' -n | timeout 5 unmunge -S '$sock'"; then
    cat "$s/log/munged.out" >&2 || true
    stop "$s"
    die "munged did not start"
  fi
  setsid /usr/sbin/slurmctld -D </dev/null >"$s/log/slurmctld.out" 2>&1 &
  echo $! >"$s/slurmctld.pid"
  setsid /usr/sbin/slurmd -D -N localhost </dev/null >"$s/log/slurmd.out" 2>&1 & # NodeName differs from hostname
  echo $! >"$s/slurmd.pid"
  if ! wait_for 60 settled "$s" || ! node_idle; then
    tail -n 30 "$s"/log/slurm*.out >&2 || true
    stop "$s"
    die "the node did not become idle within 60 s (logs in $s/log)"
  fi
  timeout 5 sinfo
}

stop() {
  local s=$1 name pid ids=()
  if alive "$s/slurmctld.pid" slurmctld && ours "$s"; then # the cluster is private: every job in it is ours
    mapfile -t ids < <(timeout 10 squeue -h -o %i 2>/dev/null || true)
    [ ${#ids[@]} = 0 ] || timeout 10 scancel "${ids[@]}" 2>/dev/null || true
  fi
  for name in "${DAEMONS[@]}"; do
    if alive "$s/$name.pid" "$name"; then
      pid=$(cat "$s/$name.pid")
      kill -TERM "$pid" 2>/dev/null || true
      wait_for 10 sh -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$s/$name.pid"
  done
  if ours "$s"; then rm -f "$CONF" "$GRES"; fi
}

status() {
  local s=$1 name
  for name in "${DAEMONS[@]}"; do
    if alive "$s/$name.pid" "$name"; then echo "$name: pid $(cat "$s/$name.pid")"; else echo "$name: stopped"; fi
  done
  if alive "$s/slurmctld.pid" slurmctld; then timeout 5 sinfo; fi
}

cmd=${1:-}
case "$cmd" in
  install) install ;;
  start | stop | status)
    [ $# = 2 ] || die "usage: $0 $cmd STATE_DIR" 2
    mkdir -p "$2"
    "$cmd" "$(cd "$2" && pwd)"
    ;;
  *) die "usage: $0 {install|start STATE|stop STATE|status STATE}" 2 ;;
esac
