#!/usr/bin/env bash
# slurm-cluster.sh -- a real single-node SLURM cluster for tests and CI.
#
# Debian 12's slurm-wlm 22.05 + munge + slurmdbd accounting on MariaDB, run as
# plain daemons (no systemd needed). One cluster per machine: the daemons use
# the fixed ports 6817 (slurmctld), 6818 (slurmd), 6819 (slurmdbd), 3306.
#
# Usage: scripts/slurm-cluster.sh {install|start|stop|status|restart}
#   install  apt-get install the packages (skipped when already installed)
#   start    install if needed, write configs, start munge, mariadb, slurmdbd,
#            slurmctld, slurmd and wait for the node to be idle (idempotent)
#   stop     cancel remaining jobs, kill each daemon via its pid file
#            (idempotent)
#   status   exit 0 if the cluster answers and its node is idle/mixed/
#            allocated and accounting (slurmdbd) answers; otherwise 1 = down,
#            2 = node not idle/mixed/allocated, 3 = not installed/configured,
#            4 = accounting down, 5 = one of this script's daemons died
#   restart  stop, then start
#
# Environment:
#   MATHREASON_SLURM_DIR   state dir (default /tmp/mathreason-slurm): state,
#                          logs, pid files, MariaDB data, copies of the configs
#   MATHREASON_SLURM_WAIT  seconds to wait for the node to be idle (default 60)
#
# The configs are written to $MATHREASON_SLURM_DIR/etc and installed as
# /etc/slurm/slurm.conf and /etc/slurm/slurmdbd.conf (mode 600), the paths the
# daemons and every client (sbatch, sinfo, sacct, scontrol, submitit, pytest)
# read by default, so no SLURM_CONF is needed anywhere.
#
# A test can detect a running cluster with:
#   scripts/slurm-cluster.sh status        (exit 0 = usable)
# or, without this script:
#   timeout 15 sinfo -h -o %T              (prints idle, mixed or allocated)
set -euo pipefail

PROG=slurm-cluster.sh
DIR="${MATHREASON_SLURM_DIR:-/tmp/mathreason-slurm}"
WAIT_S="${MATHREASON_SLURM_WAIT:-60}"
CLUSTER_NAME=ci
PARTITION=debug
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=mathreason-slurm
MYSQL_RUN=/run/mysqld
MYSQL_SOCK="$MYSQL_RUN/mysqld.sock"
MYSQL_PID="$MYSQL_RUN/mysqld.pid"
MUNGE_PID=/run/munge/munged.pid
ETC_SLURM=/etc/slurm
MARKER="# written by mathreason scripts/slurm-cluster.sh"

PACKAGES=(munge slurmctld slurmd slurm-client slurm-wlm-basic-plugins
          slurmdbd slurm-wlm-mysql-plugin mariadb-server)

log()  { printf '%s: %s\n' "$PROG" "$*"; }
die()  { printf '%s: error: %s\n' "$PROG" "$1" >&2; shift || true
         local f; for f in "$@"; do
           if [[ -s "$f" ]]; then
             printf -- '--- last lines of %s ---\n' "$f" >&2; tail -n 20 "$f" >&2
           fi
         done
         exit 1; }
now()  { date +%s.%N; }
oneline() { tr '\n' ' ' | sed 's/ *$//'; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages, writes /etc/slurm and starts daemons)"; }

# pid_alive PIDFILE: true if the file names a live process
pid_alive() {
  local pid
  [[ -s "$1" ]] || return 1
  pid=$(tr -dc '0-9' < "$1")
  [[ -n "$pid" && -d "/proc/$pid" ]]
}

# checkable PIDFILE: false when this user cannot tell (e.g. /run/mysqld is
# mysql-only and status runs as an ordinary user)
checkable() { [[ -x "$(dirname "$1")" ]] && { [[ ! -e "$1" ]] || [[ -r "$1" ]]; }; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Serialise start/stop (e.g. several pytest workers calling start at once).
# The daemons are started with 9>&- so they do not inherit (and keep) the lock.
take_lock() {
  local lock=/run/lock/mathreason-slurm.lock
  [[ -d /run/lock && -w /run/lock ]] || lock=/tmp/mathreason-slurm.lock
  exec 9>"$lock"
  flock -w 300 9 || die "another $PROG has held $lock for 300 s"
}

missing_packages() {
  local p st
  for p in "${PACKAGES[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ "$st" == installed ]] || echo "$p"
  done
}

cmd_install() {
  need_root
  local t0 missing aptlog
  t0=$(now)
  mapfile -t missing < <(missing_packages)
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "packages already installed"
    return 0
  fi
  log "installing: ${missing[*]}"
  mkdir -p "$DIR/log"
  aptlog="$DIR/log/apt.log"
  export DEBIAN_FRONTEND=noninteractive
  # Package lists may be empty or stale on a fresh machine: update once if needed.
  if ! apt-cache show slurmctld >/dev/null 2>&1 || [[ ! -d /var/lib/apt/lists ]] \
     || ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
    apt-get update >"$aptlog" 2>&1 || die "apt-get update failed" "$aptlog"
  fi
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >>"$aptlog" 2>&1; then
    log "apt-get install failed; running apt-get update and retrying"
    apt-get update >>"$aptlog" 2>&1 || die "apt-get update failed" "$aptlog"
    apt-get install -y --no-install-recommends "${missing[@]}" >>"$aptlog" 2>&1 \
      || die "apt-get install ${missing[*]} failed" "$aptlog"
  fi
  mapfile -t missing < <(missing_packages)
  [[ ${#missing[@]} -eq 0 ]] || die "still not installed after apt-get: ${missing[*]}" "$aptlog"
  log "install took $(since "$t0") s"
}

# ---------------------------------------------------------------- status ---

# node_state: print the node state(s) from sinfo, or fail
node_state() {
  timeout 15 sinfo -h -o %T 2>/dev/null
}

state_ok() {   # state_ok STATE-LINES
  local s n=0
  while read -r s; do
    [[ -z "$s" ]] && continue
    case "$s" in idle|mixed|allocated|completing) n=$((n + 1)) ;; *) return 1 ;; esac
  done <<<"$1"
  [[ $n -gt 0 ]]
}

accounting_ok() {
  timeout 15 sacct -n -X -S now -o JobID >/dev/null 2>&1
}

# dead_daemons: for a cluster started by this script (marker in slurm.conf),
# print the daemons whose pid file names no live process. slurmctld keeps
# saying the node is idle for minutes after slurmd died, so sinfo alone misses it.
dead_daemons() {
  local d n dead=()
  d=$(conf_dir)
  [[ -n "$d" ]] || return 0
  for n in slurmctld slurmd slurmdbd; do
    checkable "$d/run/$n.pid" && ! pid_alive "$d/run/$n.pid" && dead+=("$n")
  done
  checkable "$MYSQL_PID" && ! pid_alive "$MYSQL_PID" && dead+=(mariadbd)
  checkable "$MUNGE_PID" && ! pid_alive "$MUNGE_PID" && dead+=(munged)
  echo "${dead[*]}"
}

cluster_up() {
  local st
  command -v sinfo >/dev/null 2>&1 || return 1
  [[ -f "$ETC_SLURM/slurm.conf" ]] || return 1
  port_open 6817 || return 1
  [[ -z "$(dead_daemons)" ]] || return 1
  st=$(node_state) || return 1
  state_ok "$st" || return 1
  accounting_ok
}

cmd_status() {
  local st
  if ! command -v sinfo >/dev/null 2>&1; then
    log "down: slurm is not installed"; return 3
  fi
  if [[ ! -f "$ETC_SLURM/slurm.conf" ]]; then
    log "down: no $ETC_SLURM/slurm.conf"; return 3
  fi
  if ! port_open 6817; then
    log "down: nothing listens on the slurmctld port 6817"; return 1
  fi
  if ! st=$(node_state); then
    log "down: slurmctld does not answer (sinfo failed)"; return 1
  fi
  local dead
  dead=$(dead_daemons)
  if [[ -n "$dead" ]]; then
    log "degraded: not running: $dead (run '$PROG start' to restart them)"; return 5
  fi
  if ! state_ok "$st"; then
    log "down: node state is '$(oneline <<<"$st")', not idle/mixed/allocated"; return 2
  fi
  if ! accounting_ok; then
    log "degraded: node $(oneline <<<"$st") but accounting (slurmdbd) does not answer"; return 4
  fi
  log "up: node $(hostname -s) $(oneline <<<"$st"), partition $PARTITION, accounting on, state dir $(conf_dir)"
}

# conf_dir: the state dir the installed slurm.conf points at
conf_dir() {
  [[ -f "$ETC_SLURM/slurm.conf" ]] || return 0
  sed -n 's/^# state dir: //p' "$ETC_SLURM/slurm.conf" 2>/dev/null | head -n 1 || true
}

# ----------------------------------------------------------------- start ---

ensure_hostname() {
  local h
  h=$(hostname -s)
  if ! getent hosts "$h" >/dev/null 2>&1; then
    log "hostname $h does not resolve; adding it to /etc/hosts"
    printf '127.0.0.1\t%s\n' "$h" >> /etc/hosts
  fi
}

write_configs() {
  local host cpus mem real
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)
  [[ -n "$mem" ]] || mem=$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)
  real=$(( mem * 9 / 10 ))
  mkdir -p "$DIR"/{etc,log,run,state/ctld,state/d}
  cat > "$DIR/etc/slurm.conf" <<EOF
$MARKER
# state dir: $DIR
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# requeued jobs wait cred_expire before restarting (default 120 s)
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SwitchType=switch/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without it a job with no --mem takes the whole node and jobs run one at a time
DefMemPerCPU=1024
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
ReturnToService=2
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
MinJobAge=300
KillWait=5
InactiveLimit=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
NodeName=$host CPUs=$cpus RealMemory=$real State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat > "$DIR/etc/slurmdbd.conf" <<EOF
$MARKER
# state dir: $DIR
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageLoc=$DB_NAME
StorageUser=$DB_USER
StoragePass=$DB_PASS
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
EOF
  chmod 600 "$DIR/etc/slurmdbd.conf"
  mkdir -p "$ETC_SLURM"
  local f
  for f in slurm.conf slurmdbd.conf; do
    if [[ -f "$ETC_SLURM/$f" ]] && ! grep -qF "$MARKER" "$ETC_SLURM/$f" \
       && [[ ! -e "$ETC_SLURM/$f.orig" ]]; then
      log "keeping the previous $ETC_SLURM/$f as $ETC_SLURM/$f.orig"
      cp -p "$ETC_SLURM/$f" "$ETC_SLURM/$f.orig"
    fi
  done
  install -m 644 "$DIR/etc/slurm.conf" "$ETC_SLURM/slurm.conf"
  install -m 600 "$DIR/etc/slurmdbd.conf" "$ETC_SLURM/slurmdbd.conf"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return 0
  fi
  [[ -s /etc/munge/munge.key ]] || die "/etc/munge/munge.key is missing (reinstall the munge package)"
  mkdir -p /run/munge
  chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged 9>&- >"$DIR/log/munged.out" 2>&1 \
    || die "munged failed to start" "$DIR/log/munged.out" /var/log/munge/munged.log
  local i
  for i in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "munge does not answer after 5 s" /var/log/munge/munged.log
}

mysql_ping() { mariadb-admin --socket="$MYSQL_SOCK" ping >/dev/null 2>&1; }

start_mariadb() {
  local dbl="$DIR/log/mariadb.log" i
  mkdir -p "$MYSQL_RUN"
  chown mysql:mysql "$MYSQL_RUN"
  if ! mysql_ping; then
    if [[ ! -d "$DIR/mysql/mysql" ]]; then
      rm -rf "$DIR/mysql"
      mariadb-install-db --user=mysql --datadir="$DIR/mysql" \
        --auth-root-authentication-method=socket >"$DIR/log/mariadb-install.log" 2>&1 \
        || die "mariadb-install-db failed" "$DIR/log/mariadb-install.log"
    fi
    touch "$dbl"
    chown mysql:mysql "$dbl"
    setsid -f mariadbd --user=mysql --datadir="$DIR/mysql" --socket="$MYSQL_SOCK" \
      --pid-file="$MYSQL_PID" --bind-address=127.0.0.1 --port=3306 \
      --log-error="$dbl" </dev/null >>"$dbl" 2>&1 9>&-
    for i in $(seq 300); do
      mysql_ping && break
      sleep 0.1
    done
    mysql_ping || die "mariadb does not answer after 30 s" "$dbl"
  fi
  mariadb --socket="$MYSQL_SOCK" -u root >"$DIR/log/mariadb-setup.log" 2>&1 <<EOF \
    || die "creating the accounting database failed" "$DIR/log/mariadb-setup.log"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
EOF
}

start_slurmdbd() {
  local i
  if ! pid_alive "$DIR/run/slurmdbd.pid"; then
    slurmdbd 9>&- >"$DIR/log/slurmdbd.out" 2>&1 \
      || die "slurmdbd failed to start" "$DIR/log/slurmdbd.out" "$DIR/log/slurmdbd.log"
  fi
  for i in $(seq 300); do
    port_open 6819 && return 0
    pid_alive "$DIR/run/slurmdbd.pid" || [[ $i -lt 20 ]] \
      || die "slurmdbd exited" "$DIR/log/slurmdbd.log"
    sleep 0.1
  done
  die "slurmdbd does not listen on 6819 after 30 s" "$DIR/log/slurmdbd.log"
}

start_slurmctld() {
  pid_alive "$DIR/run/slurmctld.pid" && return 0
  # -i: ignore errors in the saved state (the state, including the job id
  # counter, is recovered, so job ids stay unique in accounting)
  slurmctld -i 9>&- >"$DIR/log/slurmctld.out" 2>&1 \
    || die "slurmctld failed to start" "$DIR/log/slurmctld.out" "$DIR/log/slurmctld.log"
}

start_slurmd() {
  pid_alive "$DIR/run/slurmd.pid" && return 0
  slurmd 9>&- >"$DIR/log/slurmd.out" 2>&1 \
    || die "slurmd failed to start" "$DIR/log/slurmd.out" "$DIR/log/slurmd.log"
}

wait_idle() {
  local t0 st="" i=0
  t0=$(date +%s)
  while (( $(date +%s) - t0 < WAIT_S )); do
    st=$(node_state || true)
    if state_ok "$st"; then
      # the node answers; make sure accounting does too (submitit uses sacct)
      accounting_ok && return 0
    fi
    case "$st" in
      *down*|*drain*|*fail*)
        # e.g. a node left down by an earlier run: bring it back
        if (( i++ % 5 == 0 )); then
          scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true
        fi ;;
    esac
    pid_alive "$DIR/run/slurmctld.pid" || die "slurmctld exited" "$DIR/log/slurmctld.log"
    pid_alive "$DIR/run/slurmd.pid" || die "slurmd exited" "$DIR/log/slurmd.log"
    sleep 0.5
  done
  if state_ok "$st"; then
    die "node is $(oneline <<<"$st") but accounting (sacct) does not answer within ${WAIT_S} s" \
      "$DIR/log/slurmdbd.log" "$DIR/log/slurmctld.log"
  fi
  die "node never became idle within ${WAIT_S} s (sinfo says '$(oneline <<<"$st")')" \
    "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"
}

cmd_start() {
  need_root
  take_lock
  local t0
  t0=$(now)
  if cluster_up; then
    log "already up (node $(hostname -s) $(node_state | oneline), state dir $(conf_dir)); nothing to do"
    return 0
  fi
  local other
  other=$(conf_dir)
  if [[ -n "$other" && "$other" != "$DIR" ]] && pid_alive "$other/run/slurmctld.pid"; then
    die "a cluster from state dir $other is running: run '$PROG stop' with MATHREASON_SLURM_DIR=$other first"
  fi
  cmd_install
  local t1
  t1=$(now)
  ensure_hostname
  write_configs
  start_munge
  start_mariadb
  start_slurmdbd
  start_slurmctld
  start_slurmd
  wait_idle
  log "up: node $(hostname -s) $(node_state | oneline), partition $PARTITION, state dir $DIR"
  log "start took $(since "$t1") s (total with install check: $(since "$t0") s)"
}

# ------------------------------------------------------------------ stop ---

# stop_daemons NAME PIDFILE [NAME PIDFILE ...]: send TERM to each daemon named
# by a pid file, wait up to 15 s for all of them to exit, then KILL the rest.
stop_daemons() {
  local t0 names=() pids=() pfs=() pid i k left
  t0=$(now)
  while [[ $# -ge 2 ]]; do
    if pid_alive "$2"; then
      pid=$(tr -dc '0-9' < "$2")
      kill -TERM "$pid" 2>/dev/null || true
      names+=("$1"); pids+=("$pid"); pfs+=("$2")
    else
      rm -f "$2" 2>/dev/null || true
    fi
    shift 2
  done
  [[ ${#pids[@]} -gt 0 ]] || return 0
  for i in $(seq 150); do
    left=0
    for k in "${!pids[@]}"; do
      [[ -n "${pids[k]}" ]] || continue
      if kill -0 "${pids[k]}" 2>/dev/null; then
        left=1
      else
        log "stopped ${names[k]} (pid ${pids[k]}) in $(since "$t0") s"
        rm -f "${pfs[k]}" 2>/dev/null || true
        pids[k]=""
      fi
    done
    [[ $left -eq 1 ]] || return 0
    sleep 0.1
  done
  for k in "${!pids[@]}"; do
    [[ -n "${pids[k]}" ]] || continue
    kill -KILL "${pids[k]}" 2>/dev/null || true
    log "killed ${names[k]} (pid ${pids[k]}) after 15 s"
    rm -f "${pfs[k]}" 2>/dev/null || true
  done
}

cmd_stop() {
  need_root
  take_lock
  local t0 d jobs
  t0=$(now)
  # stop the cluster the installed config points at (normally $DIR)
  d=$(conf_dir)
  [[ -n "$d" ]] || d=$DIR
  local pf any=0
  for pf in "$d/run/slurmd.pid" "$d/run/slurmctld.pid" "$d/run/slurmdbd.pid" "$MYSQL_PID" "$MUNGE_PID"; do
    pid_alive "$pf" && any=1
  done
  if [[ $any -eq 0 ]]; then
    log "not running (state dir $d); nothing to stop"
    return 0
  fi
  if pid_alive "$d/run/slurmctld.pid"; then
    # cancel queued/running jobs so no job process outlives the cluster
    jobs=$(timeout 15 squeue -h -o %A 2>/dev/null || true)
    if [[ -n "$jobs" ]]; then
      log "cancelling jobs: $(oneline <<<"$jobs")"
      # shellcheck disable=SC2086
      timeout 15 scancel $jobs >/dev/null 2>&1 || true
      for _ in $(seq 50); do
        [[ -z "$(timeout 5 squeue -h -o %A 2>/dev/null || true)" ]] && break
        sleep 0.1
      done
    fi
  fi
  # in three waves: slurm daemons, then accounting, then what they all use
  stop_daemons slurmd "$d/run/slurmd.pid" slurmctld "$d/run/slurmctld.pid"
  stop_daemons slurmdbd "$d/run/slurmdbd.pid"
  stop_daemons mariadbd "$MYSQL_PID" munged "$MUNGE_PID"
  log "stopped (state dir $d) in $(since "$t0") s"
}

# ------------------------------------------------------------------ main ---

usage() {
  sed -n '8,24p' "$0" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
  install) cmd_install ;;
  start)   cmd_start ;;
  stop)    cmd_stop ;;
  status)  cmd_status ;;
  restart) cmd_stop; cmd_start ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
