#!/usr/bin/env bash
# A real single-node Slurm on this machine, for the Slurm executor's tests and for trying
# `robarch run --executor slurm` without a cluster:
#   scripts/slurm-local.sh install      # Debian/Ubuntu packages (slurmctld, slurmd, munge), as root
#   scripts/slurm-local.sh start DIR    # munged + slurmctld + slurmd, all state under DIR
#   export SLURM_CONF=DIR/slurm.conf    # then sbatch, squeue, robarch run --executor slurm …
#   scripts/slurm-local.sh stop DIR
# `start` exits 3 when the daemons are not installed. The daemons run as the calling user (root
# in CI) on ports chosen free at start, so several clusters can run side by side.
set -euo pipefail

cmd=${1:-}
need=(munged slurmctld slurmd sbatch squeue scancel scontrol)

missing() {
  local m=()
  for c in "${need[@]}"; do
    command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || m+=("$c")
  done
  echo "${m[@]:-}"
}

case "$cmd" in
install)
  if [ -z "$(missing)" ]; then exit 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "slurm-local: cannot install Slurm here (needs root and apt-get); missing: $(missing)" >&2
    exit 3
  fi
  pkgs=(slurmctld slurmd slurm-client munge)
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null; } ||
    { echo "slurm-local: apt-get could not install ${pkgs[*]}" >&2; exit 3; }
  ;;
start)
  dir=${2:?usage: slurm-local.sh start DIR}
  if [ -n "$(missing)" ]; then
    echo "slurm-local: not installed: $(missing) (scripts/slurm-local.sh install)" >&2
    exit 3
  fi
  export PATH="$PATH:/usr/sbin"
  mkdir -p "$dir"/{state,spool,log,run,munge}
  dir=$(cd "$dir" && pwd)
  chmod 700 "$dir/munge"
  # munge's key: random, private to this cluster.
  head -c 1024 /dev/urandom >"$dir/munge/munge.key"
  chmod 400 "$dir/munge/munge.key"
  munged --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/seed" --force
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  # Addressed as 127.0.0.1: the host name need not resolve.
  host=$(hostname -s)
  mem=$(awk '/MemTotal/ {print int($2/1024/2)}' /proc/meminfo)
  user=$(id -un)
  cat >"$dir/slurm.conf" <<EOF
ClusterName=robarch-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to squeue for an hour (there is no accounting database here).
MinJobAge=3600
SchedulerParameters=sched_interval=1
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF"
  for _ in $(seq 1 100); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qx 'idle'; then
      echo "$SLURM_CONF"
      exit 0
    fi
    sleep 0.2
  done
  echo "slurm-local: the node did not come up; see $dir/log" >&2
  tail -5 "$dir"/log/*.log >&2 || true
  exit 1
  ;;
stop)
  dir=${2:?usage: slurm-local.sh stop DIR}
  for p in "$dir/run/slurmd.pid" "$dir/run/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
  done
  ;;
*)
  echo "usage: slurm-local.sh install | start DIR | stop DIR" >&2
  exit 2
  ;;
esac
