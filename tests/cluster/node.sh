# The real node of `tests/cluster/up --node containerd`, sourced by up and down after lib.sh:
# containerd, runc and the CNI plugins from Debian; kubelet, kube-proxy and kube-scheduler
# built from tests/cluster/kube; a bridge network of its own; the pause and SynqX images
# imported into containerd's k8s.io namespace. Flags follow Kubernetes'
# hack/local-up-cluster.sh, with what this kind of machine needs (see docs/develop.md).
#
# Everything stays on this machine: the node, the API server and the test servers pods
# reach use the bridge's own address, pods have no DNS server, and a FORWARD rule drops
# anything a pod sends that would leave the bridge.

node_name="synqx-containerd-node"
node_bridge="synqx0"
node_gateway="10.244.0.1"
node_subnet="10.244.0.0/24"
node_dir="$run_dir/node"
node_sock="$node_dir/containerd/containerd.sock"
pause_image="localhost/synqx/pause:1"
# The rule that keeps pod traffic on the bridge (added by up, removed by down).
node_forward_rule=(FORWARD -i "$node_bridge" ! -o "$node_bridge" -m comment --comment synqx-test-node -j DROP)

node_ctr() { ctr --address "$node_sock" --namespace k8s.io "$@"; }

# Checks the packages and the machine before anything starts.
node_check() {
  local missing=() tool
  for tool in containerd runc ctr iptables buildah ip; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] || missing+=("containernetworking-plugins")
  if (( ${#missing[@]} > 0 )); then
    fail "the containerd node needs ${missing[*]}: apt-get install containerd runc containernetworking-plugins buildah skopeo iptables iproute2"
  fi
  [[ "$(id -u)" == 0 ]] || fail "the containerd node runs containers and makes a network bridge: run as root"
  if ip link show "$node_bridge" >/dev/null 2>&1; then
    if node_elsewhere_runs; then
      fail "the network bridge $node_bridge belongs to another test node that still runs on this machine (its run directory: $(cat "$node_owner_file" 2>/dev/null || echo unknown)): stop it with SYNQX_CLUSTER_DIR=<that directory> tests/cluster/down"
    fi
    node_clear_stale
  fi
}

# A node whose processes were killed with its machine or its test run (SIGKILL, a restart)
# leaves its bridge, its iptables rules and its mounts behind. This record names the run
# directory of the node that made the bridge, so the next node can tell a live owner from
# a dead one and clear what the dead one left.
node_owner_file="/run/synqx-test-node"

# True while the node that made the bridge still runs: a component recorded in its run
# directory is alive, or (for a bridge made before the record existed) some kubelet or
# kube-proxy runs on this machine.
node_elsewhere_runs() {
  local owner c exe
  owner="$(cat "$node_owner_file" 2>/dev/null || true)"
  if [[ -n "$owner" && "$owner" != "$run_dir" ]]; then
    for c in "${components[@]}"; do
      (run_dir="$owner" live_pid "$c" >/dev/null) && return 0
    done
  fi
  for exe in /proc/[0-9]*/exe; do
    case "$(basename "$(readlink "$exe" 2>/dev/null || true)")" in
      kubelet | kube-proxy) return 0 ;;
    esac
  done
  return 1
}

# Clears what a dead node left: through its own run directory's down when it is known
# (mounts, kube-proxy's rules, the run directory), and the bridge and rules in any case.
node_clear_stale() {
  local owner
  owner="$(cat "$node_owner_file" 2>/dev/null || true)"
  echo "the network bridge $node_bridge was left by a test node that no longer runs (run directory: ${owner:-not recorded}); clearing it" >&2
  if [[ -n "$owner" && "$owner" != "$run_dir" && -d "$owner" ]]; then
    SYNQX_CLUSTER_DIR="$owner" "$cluster_here/down" || true
  fi
  while iptables -D "${node_forward_rule[@]}" 2>/dev/null; do :; done
  node_remove_kube_chains iptables
  node_remove_kube_chains ip6tables
  ip link delete "$node_bridge" 2>/dev/null || true
  rm -f "$node_owner_file"
  if ip link show "$node_bridge" >/dev/null 2>&1; then
    fail "the network bridge $node_bridge left by a dead test node could not be removed: ip link delete $node_bridge"
  fi
}

# The bridge exists before the API server starts: the API server listens on its address so
# that pods reach it through the `kubernetes` Service.
node_network_up() {
  ip link add "$node_bridge" type bridge
  echo "$node_bridge" > "$run_dir/proc/bridge"
  echo "$run_dir" > "$node_owner_file"
  ip addr add "$node_gateway/24" dev "$node_bridge"
  ip link set "$node_bridge" up
  iptables -I "${node_forward_rule[@]}"
  echo 1 > "$run_dir/proc/forward-rule"
}

node_start() {
  local testbin="$1" nodebin="$2" kubeconfig="$3" certs="$4"
  mkdir -p "$node_dir"/{containerd,net.d,ipam,kubelet,pod-logs,plugins}

  # --- containerd ------------------------------------------------------------------------
  cat > "$node_dir/containerd/config.toml" <<EOF
version = 2
root = "$node_dir/containerd/root"
state = "$node_dir/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$node_sock"
[ttrpc]
  address = "$node_sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$node_dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  # This machine refuses a negative oom_score_adj; without this runc fails every sandbox
  # with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node_dir/net.d"
EOF
  cat > "$node_dir/net.d/10-synqx.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "synqx",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$node_bridge",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$node_dir/ipam",
        "ranges": [[{"subnet": "$node_subnet", "rangeStart": "10.244.0.10", "gateway": "$node_gateway"}]]
      }
    }
  ]
}
EOF
  start containerd containerd --config "$node_dir/containerd/config.toml"
  wait_for containerd 30 ctr --address "$node_sock" version

  # --- images: pause (built here from a static binary) and SynqX -------------------------
  local pause_archive="$node_dir/pause.oci.tar"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$node_dir/Containerfile.pause"
  cp "$nodebin/pause" "$node_dir/pause"
  local bah=(buildah --root "$node_dir/buildah/storage" --runroot "$node_dir/buildah/run" --storage-driver vfs)
  "${bah[@]}" build --quiet --layers=false -f "$node_dir/Containerfile.pause" -t "$pause_image" "$node_dir" >/dev/null
  "${bah[@]}" push --quiet "$pause_image" "oci-archive:$pause_archive:$pause_image" >/dev/null
  rm -rf "$node_dir/buildah"
  node_ctr images import "$pause_archive" >/dev/null
  node_import_synqx

  # --- kube-scheduler (the process kubelet binds its own pods; a real node needs it) ------
  start kube-scheduler "$nodebin/kube-scheduler" \
    --kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$(free_port)" --leader-elect=false

  # --- kubelet ---------------------------------------------------------------------------
  cat > "$node_dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$node_sock
address: $node_gateway
port: $(free_port)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(free_port)
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $certs/ca.crt}
authorization: {mode: AlwaysAllow}
tlsCertFile: $certs/kubelet.crt
tlsPrivateKeyFile: $certs/kubelet.key
# What this machine allows: no QoS cgroup tree, cgroupfs, no allocatable enforcement.
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
# Pods get no DNS server: nothing they resolve could stay on this machine.
resolvConf: ""
clusterDomain: cluster.local
podLogsDir: $node_dir/pod-logs
volumePluginDir: $node_dir/plugins
serializeImagePulls: false
maxPods: 60
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  start kubelet "$nodebin/kubelet" --config "$node_dir/kubelet/config.yaml" --kubeconfig "$kubeconfig" \
    --root-dir "$node_dir/kubelet/root" --cert-dir "$node_dir/kubelet/pki" \
    --hostname-override "$node_name" --node-ip "$node_gateway" --v 1

  # --- kube-proxy ------------------------------------------------------------------------
  cat > "$node_dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $kubeconfig}
hostnameOverride: $node_name
mode: iptables
clusterCIDR: $node_subnet
bindAddress: $node_gateway
healthzBindAddress: 127.0.0.1:$(free_port)
metricsBindAddress: 127.0.0.1:$(free_port)
nodePortAddresses: ["$node_gateway/32"]
iptables: {localhostNodePorts: false}
# Leave the machine's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy "$nodebin/kube-proxy" --config "$node_dir/kube-proxy.yaml"

  wait_for kubelet 120 "$testbin/kubectl" --kubeconfig "$kubeconfig" wait --for condition=Ready --timeout 1s "node/$node_name"
  # The kubelet registers with this taint and the node lifecycle controller lifts it; that
  # controller is not run (it would evict the process kubelet's pods), so lift it here.
  "$testbin/kubectl" --kubeconfig "$kubeconfig" taint node "$node_name" node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true
}

# Imports the SynqX image archive, building it first when it is missing or older than the
# binaries it would pack.
node_import_synqx() {
  local archive bin_dir
  archive="$("$repo/scripts/image" path)"
  bin_dir="$(cat "$run_dir/synqx-bin-path")"
  if [[ ! -f "$archive" || "$bin_dir/synqx" -nt "$archive" || "$bin_dir/synqx-operator" -nt "$archive" ]]; then
    say "building the SynqX image from $bin_dir (scripts/image build)"
    "$repo/scripts/image" build --bin-dir "$bin_dir" >/dev/null
  fi
  node_ctr images import "$archive" >/dev/null
}

# Stops the node: pods' containers, the node's processes, then network and mounts.
node_stop() {
  if [[ -S "$node_sock" ]] && live_pid containerd >/dev/null; then
    local task
    for task in $(node_ctr tasks list --quiet 2>/dev/null); do
      node_ctr tasks kill --signal SIGKILL "$task" >/dev/null 2>&1 || true
    done
    local netns=() id path waited
    for id in $(node_ctr containers list --quiet 2>/dev/null); do
      path="$(node_ctr containers info "$id" 2>/dev/null |
        python3 -c 'import json, sys
for ns in json.load(sys.stdin).get("Spec", {}).get("linux", {}).get("namespaces", []):
    if ns.get("type") == "network" and ns.get("path"): print(ns["path"])' 2>/dev/null || true)"
      [[ -n "$path" ]] && netns+=("$path")
      for waited in 1 2 3 4 5 6 7 8 9 10; do
        node_ctr tasks delete --force "$id" >/dev/null 2>&1 || true
        node_ctr containers delete "$id" >/dev/null 2>&1 && break
        sleep 0.5
      done
    done
    for path in "${netns[@]}"; do
      umount "$path" 2>/dev/null || true
      rm -f "$path"
    done
  fi
}

# Removes every KUBE-* chain and the rules that jump to them, in every table.
node_remove_kube_chains() {
  local cmd="$1" table rule chain
  command -v "$cmd" >/dev/null || return 0
  for table in filter nat mangle; do
    { "$cmd" -t "$table" -S 2>/dev/null || true; } | { grep -E '^-A [A-Z]+ .*-j KUBE-' || true; } | while read -r rule; do
      # shellcheck disable=SC2086 # the rule's words, as iptables printed them
      eval "$cmd -t $table ${rule/-A/-D}" 2>/dev/null || true
    done
    for chain in $("$cmd" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
      "$cmd" -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $("$cmd" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
      "$cmd" -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

# After every process is stopped: kube-proxy's rules, the bridge, the FORWARD rule, mounts
# left under the run directory, and the kubelet's log links.
node_cleanup() {
  local nodebin
  nodebin="$(cat "$run_dir/node-bin-path" 2>/dev/null || true)"
  if [[ -n "$nodebin" && -x "$nodebin/kube-proxy" ]]; then
    "$nodebin/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  if [[ -f "$run_dir/proc/forward-rule" ]]; then
    iptables -D "${node_forward_rule[@]}" 2>/dev/null || true
    # What the kubelet adds itself (KUBE-FIREWALL, canaries) and kube-proxy --cleanup left.
    node_remove_kube_chains iptables
    node_remove_kube_chains ip6tables
  fi
  if [[ -f "$run_dir/proc/bridge" ]]; then
    ip link delete "$node_bridge" 2>/dev/null || true
    [[ "$(cat "$node_owner_file" 2>/dev/null || true)" == "$run_dir" ]] && rm -f "$node_owner_file"
    echo "removed the bridge $node_bridge" >&2
  fi
  # Deepest first, so nested mounts come off before their parents.
  awk -v dir="$run_dir/" 'index($2, dir) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
  local link
  for link in /var/log/containers/*.log; do
    [[ -L "$link" && "$(readlink "$link")" == "$run_dir/"* ]] && rm -f "$link"
  done
  return 0
}
