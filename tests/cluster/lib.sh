# Shared by tests/cluster/up and down: where the run directory is and how to tell whether
# a process it recorded is still the one that was started.

cluster_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$cluster_here/../.." && pwd)"
run_dir="${SYNQX_CLUSTER_DIR:-$repo/.synqx-cluster}"
# Stopped in this order: the kubelets first so they can stop their pods (the containerd
# node's containers are stopped between kubelet and containerd), etcd last.
components=(synqx-kubelet kubelet kube-proxy kube-scheduler containerd kube-controller-manager kube-apiserver etcd)

# The pid recorded for a component, if that process still runs that program.
live_pid() {
  local file="$run_dir/proc/$1.pid" pid
  [[ -f "$file" ]] || return 1
  pid="$(cat "$file")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  # A recycled pid belongs to some other program: never signal that. A rebuilt binary
  # shows as "<path> (deleted)" and is still ours.
  local exe
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)"
  [[ "$(basename "${exe% (deleted)}")" == "$1" ]] || return 1
  echo "$pid"
}

recorded_components() {
  local c
  for c in "${components[@]}"; do
    [[ -f "$run_dir/proc/$c.pid" ]] && echo "$c"
  done
  return 0
}

# True if the component runs from a binary that has since been rebuilt.
runs_replaced_binary() {
  local pid
  pid="$(live_pid "$1")" || return 1
  [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == *" (deleted)" ]]
}
