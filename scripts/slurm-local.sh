#!/usr/bin/env bash
# A real single-node Slurm on this machine, for the Slurm executor's tests and for trying
# `robarch run --executor slurm` without a cluster:
#   scripts/slurm-local.sh install      # Debian/Ubuntu packages (slurmctld, slurmd, munge), as root
#   scripts/slurm-local.sh start DIR    # munged + slurmctld + slurmd, all state under DIR
#   export SLURM_CONF=DIR/slurm.conf    # then sbatch, squeue, robarch run --executor slurm …
#   scripts/slurm-local.sh stop DIR
# `start` exits 3 when the daemons are not installed. The daemons run as the calling user (root
# in CI) on ports chosen free at start, so several clusters can run side by side.
#
# A cluster of several nodes, each a machine of its own as far as Slurm and robarch can tell
# (root only; nothing leaves this machine):
#   scripts/slurm-local.sh start DIR --nodes 2   # prints DIR/slurm.conf
#   scripts/slurm-local.sh on DIR node1 -- CMD…  # CMD on node1 (`ctl` is the controller's host)
#   scripts/slurm-local.sh power-off DIR node2   # every process of node2 dies at once
#   scripts/slurm-local.sh power-on DIR node2    # node2 boots again and rejoins
#   scripts/slurm-local.sh stop DIR
# The controller (`ctl`, 10.77.0.1, with munged and slurmctld) and each node (`nodeI`,
# 10.77.0.(I+1), with its slurmd) run in their own network, UTS (host name), mount and PID
# namespaces; the nodes reach the controller through veth pairs on a bridge inside the
# controller's network namespace, and share every file (the cache) as a cluster shares a
# filesystem. `start` exits 4 when namespaces cannot be created here.
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

# munged with a new random key, private to this cluster, under DIR/munge; run under the command
# prefix that follows DIR (`on DIR ctl`), if any.
munge_up() {
  local dir=$1
  shift
  head -c 1024 /dev/urandom >"$dir/munge/munge.key"
  chmod 400 "$dir/munge/munge.key"
  "$@" munged --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/seed" --force </dev/null >/dev/null 2>&1
}

# The slurm.conf lines every test cluster under DIR shares.
conf_common() {
  local dir=$1
  cat <<EOF
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmctldLogFile=$dir/log/slurmctld.log
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
EOF
}

# Multi-node clusters: the host pid (PID 1 of its namespaces) of each machine is in DIR/ns/NAME.pid.
ns_pid() { cat "$1/ns/$2.pid"; }

# Starts machine NAME: new namespaces holding only `sleep`, whose /etc/hosts names every machine.
machine() {
  local dir=$1 name=$2 upid child
  unshare --net --uts --mount --pid --fork --mount-proc --propagation private \
    sh -c "hostname $name && mount --bind '$dir/hosts' /etc/hosts && exec sleep infinity" \
    </dev/null >>"$dir/log/ns-$name.log" 2>&1 &
  upid=$!
  for _ in $(seq 1 100); do
    child=$(cat "/proc/$upid/task/$upid/children" 2>/dev/null || true)
    child=${child%% *}
    if [ -n "$child" ] && [ "$(nsenter -t "$child" -u hostname 2>/dev/null)" = "$name" ] &&
      nsenter -t "$child" -m grep -q " $name\$" /etc/hosts 2>/dev/null; then
      echo "$child" >"$dir/ns/$name.pid"
      return 0
    fi
    kill -0 "$upid" 2>/dev/null || break
    sleep 0.05
  done
  echo "slurm-local: could not create the namespaces of $name: $(cat "$dir/log/ns-$name.log")" >&2
  return 4
}

# Runs a command in machine NAME's namespaces, in the caller's working directory.
on() {
  local dir=$1 name=$2
  shift 2
  # `cd` once inside: a directory opened before entering the mount namespace (`--wd`) would
  # belong to the host's mounts, and renames between it and absolute paths fail (EXDEV).
  nsenter -t "$(ns_pid "$dir" "$name")" -n -u -m -p -- sh -c 'cd "$1" && shift && exec "$@"' sh "$PWD" "$@"
}

# Starts node I: its machine, cabled to the controller's bridge, and its slurmd.
node_up() {
  local dir=$1 i=$2 name=node$2 pid
  machine "$dir" "$name"
  pid=$(ns_pid "$dir" "$name")
  # Only the network namespace is entered: `netns` takes a pid of this (the host's) PID namespace.
  nsenter -t "$(ns_pid "$dir" ctl)" -n -- ip link add "veth$i" type veth peer name eth0 netns "$pid"
  on "$dir" ctl ip link set "veth$i" master br0 up
  on "$dir" "$name" ip addr add "10.77.0.$((i + 1))/24" dev eth0
  on "$dir" "$name" ip link set eth0 up
  on "$dir" "$name" ip link set lo up
  SLURM_CONF="$dir/slurm.conf" on "$dir" "$name" slurmd -f "$dir/slurm.conf" -N "$name" \
    </dev/null >/dev/null 2>&1
}

# Waits until sinfo shows N idle nodes.
wait_idle() {
  local dir=$1 n=$2
  for _ in $(seq 1 150); do
    if [ "$(SLURM_CONF="$dir/slurm.conf" on "$dir" ctl sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l)" = "$n" ]; then
      return 0
    fi
    sleep 0.2
  done
  echo "slurm-local: the nodes did not come up; see $dir/log" >&2
  tail -5 "$dir"/log/*.log >&2 || true
  return 1
}

multi_start() {
  local dir=$1 n=$2 i mem
  for c in unshare nsenter ip; do
    if ! command -v "$c" >/dev/null; then
      echo "slurm-local: \`$c\` is missing: a cluster of namespaces needs util-linux and iproute2" >&2
      exit 4
    fi
  done
  mkdir -p "$dir"/{state,spool,log,run,munge,ns}
  dir=$(cd "$dir" && pwd)
  chmod 700 "$dir/munge"
  {
    echo "127.0.0.1 localhost"
    echo "10.77.0.1 ctl"
    for i in $(seq 1 "$n"); do echo "10.77.0.$((i + 1)) node$i"; done
  } >"$dir/hosts"
  if ! machine "$dir" ctl; then
    echo "slurm-local: network, UTS, mount and PID namespaces cannot be created here" >&2
    exit 4
  fi
  on "$dir" ctl ip link set lo up
  on "$dir" ctl ip link add br0 type bridge
  on "$dir" ctl ip addr add 10.77.0.1/24 dev br0
  on "$dir" ctl ip link set br0 up
  munge_up "$dir" on "$dir" ctl
  mem=$(awk -v n="$n" '/MemTotal/ {print int($2/1024/2/n)}' /proc/meminfo)
  # Each node has two CPUs as Slurm sees it, whatever this machine has.
  {
    echo "ClusterName=robarch-nodes"
    echo "SlurmctldHost=ctl(10.77.0.1)"
    conf_common "$dir"
    cat <<EOF
SlurmdSpoolDir=$dir/spool/%n
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmdLogFile=$dir/log/slurmd-%n.log
SlurmctldPort=6817
SlurmdPort=6818
SlurmdParameters=config_overrides
# A lost node is noticed within seconds (a real cluster waits minutes).
SlurmdTimeout=5
MessageTimeout=3
TCPTimeout=2
EOF
    for i in $(seq 1 "$n"); do
      echo "NodeName=node$i NodeAddr=10.77.0.$((i + 1)) CPUs=2 RealMemory=$mem State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=node[1-$n] Default=YES MaxTime=INFINITE State=UP"
  } >"$dir/slurm.conf"
  SLURM_CONF="$dir/slurm.conf" on "$dir" ctl slurmctld -f "$dir/slurm.conf" </dev/null >/dev/null 2>&1
  for i in $(seq 1 "$n"); do
    mkdir -p "$dir/spool/node$i"
    node_up "$dir" "$i"
  done
  wait_idle "$dir" "$n"
  echo "$dir/slurm.conf"
}

case "$cmd" in
install)
  # `ip` (iproute2) cables the nodes of a multi-node cluster.
  if [ -z "$(missing)" ] && command -v ip >/dev/null; then exit 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "slurm-local: cannot install Slurm here (needs root and apt-get); missing: $(missing)" >&2
    exit 3
  fi
  pkgs=(slurmctld slurmd slurm-client munge iproute2)
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null; } ||
    { echo "slurm-local: apt-get could not install ${pkgs[*]}" >&2; exit 3; }
  ;;
start)
  dir=${2:?usage: slurm-local.sh start DIR [--nodes N]}
  if [ -n "$(missing)" ]; then
    echo "slurm-local: not installed: $(missing) (scripts/slurm-local.sh install)" >&2
    exit 3
  fi
  export PATH="$PATH:/usr/sbin"
  if [ "${3:-}" = "--nodes" ]; then
    multi_start "$dir" "${4:?usage: slurm-local.sh start DIR --nodes N}"
    exit 0
  fi
  mkdir -p "$dir"/{state,spool,log,run,munge}
  dir=$(cd "$dir" && pwd)
  chmod 700 "$dir/munge"
  munge_up "$dir"
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  # Addressed as 127.0.0.1: the host name need not resolve.
  host=$(hostname -s)
  mem=$(awk '/MemTotal/ {print int($2/1024/2)}' /proc/meminfo)
  {
    echo "ClusterName=robarch-test"
    echo "SlurmctldHost=$host(127.0.0.1)"
    conf_common "$dir"
    cat <<EOF
SlurmdSpoolDir=$dir/spool
SlurmdPidFile=$dir/run/slurmd.pid
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  } >"$dir/slurm.conf"
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
on)
  dir=${2:?usage: slurm-local.sh on DIR NAME -- CMD…}
  name=${3:?usage: slurm-local.sh on DIR NAME -- CMD…}
  shift 3
  [ "${1:-}" = "--" ] && shift
  export PATH="$PATH:/usr/sbin"
  on "$dir" "$name" "$@"
  ;;
power-off)
  dir=${2:?usage: slurm-local.sh power-off DIR NAME}
  name=${3:?usage: slurm-local.sh power-off DIR NAME}
  pid=$(ns_pid "$dir" "$name")
  # PID 1 of the machine's namespace: when it dies, the kernel kills every process in it at once.
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$dir/ns/$name.pid"
  ;;
power-on)
  dir=${2:?usage: slurm-local.sh power-on DIR NAME}
  name=${3:?usage: slurm-local.sh power-on DIR NAME}
  export PATH="$PATH:/usr/sbin"
  node_up "$dir" "${name#node}"
  ;;
stop)
  dir=${2:?usage: slurm-local.sh stop DIR}
  if [ -d "$dir/ns" ]; then
    for p in "$dir"/ns/*.pid; do
      [ -f "$p" ] && kill -KILL "$(cat "$p")" 2>/dev/null || true
    done
    exit 0
  fi
  for p in "$dir/run/slurmd.pid" "$dir/run/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
  done
  ;;
*)
  echo "usage: slurm-local.sh install | start DIR [--nodes N] | on DIR NAME -- CMD… | power-off DIR NAME | power-on DIR NAME | stop DIR" >&2
  exit 2
  ;;
esac
