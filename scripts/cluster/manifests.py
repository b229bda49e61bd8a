"""Configuration files of the components, written from the layout."""
import json

from layout import CONTAINERD_SOCKET, DNS_SERVICE_IP, NODE_IP, PKI, POD_CIDR, POD_GATEWAY, RUN, STATE

# The kubelet's pods live under this cgroup, so that cleaning up after a
# killed run touches nothing else on the machine.
CGROUP_ROOT = "lameduck-cluster"


def kubeadm_bindings():
    """The ClusterRoleBindings `kubeadm init` creates for the certificates it
    issued: admin.conf's group is cluster-admin, and the API server's client
    certificate towards the kubelet may use the kubelet's API."""
    def binding(name, role, kind, subject):
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}]}
    return [binding("kubeadm:cluster-admins", "cluster-admin", "Group", "kubeadm:cluster-admins"),
            binding("kubeadm:apiserver-kubelet-client", "system:kubelet-api-admin", "User",
                    "kube-apiserver-kubelet-client")]


def containerd_toml(pause_image):
    return f"""\
version = 2
root = "{STATE / 'containerd'}"
state = "{RUN / 'containerd'}"

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{STATE / 'containerd-opt'}"

[plugins."io.containerd.grpc.v1.cri"]
  # Built here and imported; there is no registry to pull from.
  sandbox_image = "{pause_image}"
  # This machine withholds CAP_SYS_RESOURCE: runc cannot lower oom_score_adj
  # below containerd's own, and every sandbox would fail to start.
  restrict_oom_score_adj = true
  # Pod network namespaces under this cluster's own state, not /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{STATE / 'cni'}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # cgroup v1 with the cgroupfs driver, as the kubelet is configured.
        SystemdCgroup = false
"""


def cni_conflist():
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": "lameduck-local",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(STATE / "cni-ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=1)


def kubelet_yaml():
    # JSON is YAML; the kubelet reads either.
    return json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # cgroup v1 only here, with Debian's containerd 1.6: kubelet 1.36 still
        # accepts both when told so.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(PKI / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "address": NODE_IP,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "clusterDomain": "cluster.local",
        "clusterDNS": [DNS_SERVICE_IP],
        "resolvConf": str(STATE / "resolv.conf"),
        # A shared test machine's disk is often fuller than the defaults allow.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        # Status changes reach the API server (and the e2e suite's watch) promptly.
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
    }, indent=1)


def coredns_manifests(image):
    """CoreDNS as a Deployment behind the kube-dns Service, with its RBAC."""
    labels = {"k8s-app": "kube-dns"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "coredns", "namespace": "kube-system"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
         # An unprivileged port: the image runs as a non-root user, which
         # capabilities.add does not give NET_BIND_SERVICE to.
         "data": {"Corefile": ".:1053 {\n    errors\n    health :8080\n    ready :8181\n"
                              "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
                              "        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n    }\n"
                              "    cache 30\n    loop\n    loadbalance\n}\n"}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": "coredns",
                      "dnsPolicy": "Default",
                      "priorityClassName": "system-cluster-critical",
                      "containers": [{
                          "name": "coredns", "image": image, "imagePullPolicy": "Never",
                          "args": ["-conf", "/etc/coredns/Corefile"],
                          "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                          "ports": [{"containerPort": 1053, "name": "dns", "protocol": "UDP"},
                                    {"containerPort": 1053, "name": "dns-tcp", "protocol": "TCP"}],
                          "securityContext": {"capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                                              "allowPrivilegeEscalation": False,
                                              "readOnlyRootFilesystem": True},
                          "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                          "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                      }],
                      "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                  }}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"selector": labels, "clusterIP": DNS_SERVICE_IP,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": "dns-tcp"}]}},
    ]

