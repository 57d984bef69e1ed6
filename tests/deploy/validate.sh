#!/usr/bin/env bash
# Validates the Kubernetes manifests offline, without a cluster:
#   1. renders them with kubectl's built-in kustomize (`kubectl kustomize DIR`);
#   2. validates the rendered output and secret.example.yaml against the Kubernetes 1.32 OpenAPI
#      schemas with kubernetes-validate --strict (unknown fields fail);
#   3. checks that the pieces agree with each other and with hotswap.toml in the ConfigMap
#      (grace period above the drain timeout, probes on the admin port, and so on).
# Usage, from anywhere: tests/deploy/validate.sh [DIR]   (DIR defaults to deploy/kubernetes)
# Needs kubectl (>= 1.27 for `labels` in kustomization.yaml) and python3 >= 3.11 (tomllib).
# Installs kubernetes-validate (PyPI, which brings PyYAML) if it is missing. Writes only to a
# temporary directory.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${1:-$root/deploy/kubernetes}"
k8s_version="1.32.0"
# Pinned: a newer release may drop the schemas for k8s_version.
validator_pin="kubernetes-validate==1.37.0"

fail() {
    echo "deploy manifests: FAIL: $*" >&2
    exit 1
}

[[ -f "$dir/kustomization.yaml" ]] || fail "no kustomization.yaml in $dir"
command -v kubectl >/dev/null || fail "kubectl not found (it renders the kustomization)"
python3 -c 'import sys, tomllib; assert sys.version_info >= (3, 11)' 2>/dev/null ||
    fail "python3 >= 3.11 (tomllib) is required"

if ! python3 -c 'import kubernetes_validate, yaml' 2>/dev/null; then
    echo "installing $validator_pin (PyPI) for the manifest checks"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$validator_pin"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

kubectl kustomize "$dir" >"$tmp/rendered.yaml" 2>"$tmp/kustomize.err" ||
    fail "kubectl kustomize $dir failed: $(cat "$tmp/kustomize.err")"

to_validate=("$tmp/rendered.yaml")
[[ -f "$dir/secret.example.yaml" ]] && to_validate+=("$dir/secret.example.yaml")
if ! python3 -m kubernetes_validate -k "$k8s_version" --strict \
    "${to_validate[@]}" >"$tmp/validate.out" 2>&1; then
    cat "$tmp/validate.out" >&2
    fail "schema validation against Kubernetes $k8s_version failed"
fi
# It exits 0 on warnings (e.g. a kind it has no schema for): accept only "INFO ... passed".
if grep -qv '^INFO .* passed for resource ' "$tmp/validate.out"; then
    cat "$tmp/validate.out" >&2
    fail "schema validation against Kubernetes $k8s_version reported problems"
fi
schema_docs=$(grep -c '^INFO .* passed for resource ' "$tmp/validate.out")

python3 - "$tmp/rendered.yaml" "$dir" "$schema_docs" <<'PY'
import os
import re
import sys
import tomllib

import yaml

rendered, manifest_dir, schema_docs = sys.argv[1], sys.argv[2], int(sys.argv[3])
passed = 0


def fail(msg):
    print(f"deploy manifests: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    global passed
    if not cond:
        fail(msg)
    passed += 1


def duration_seconds(text):
    """A humantime duration such as `30s`, `2m`, `1m 30s` or `500ms`, in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", text.strip())
    if not parts or re.sub(r"[\d.\sa-z]", "", text.strip()):
        fail(f"cannot parse duration {text!r}")
    total = 0.0
    for number, unit in parts:
        if unit not in units:
            fail(f"unknown unit in duration {text!r}")
        total += float(number) * units[unit]
    return total


def port_of(addr):
    m = re.fullmatch(r".*:(\d+)", addr)
    if not m:
        fail(f"address {addr!r} has no port")
    return int(m.group(1))


docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
# Each document that passed the schema validation above counts as a check.
if schema_docs < len(docs):
    fail(f"only {schema_docs} of {len(docs)} rendered documents passed schema validation")
passed += schema_docs
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)

for kind in ("Deployment", "Service", "ConfigMap", "PodDisruptionBudget"):
    check(len(by_kind.get(kind, [])) == 1, f"expected exactly one {kind}, found {len(by_kind.get(kind, []))}")
check("Secret" not in by_kind, "a Secret is rendered: secrets must not be in the kustomization")

dep = by_kind["Deployment"][0]
svc = by_kind["Service"][0]
cm = by_kind["ConfigMap"][0]
pdb = by_kind["PodDisruptionBudget"][0]
pod = dep["spec"]["template"]["spec"]
containers = pod["containers"]
check(len(containers) == 1, "the pod must have exactly one container")
c = containers[0]

# The config file the pod actually reads: the ConfigMap key mounted at the --config path.
args = c.get("args", [])
check("--config" in args and args.index("--config") + 1 < len(args), "container args lack --config PATH")
config_path = args[args.index("--config") + 1]
mount = next((m for m in c.get("volumeMounts", [])
              if config_path.startswith(m["mountPath"].rstrip("/") + "/")), None)
check(mount is not None, f"no volumeMount holds the config file {config_path}")
vol = next((v for v in pod.get("volumes", []) if v["name"] == mount["name"]), None)
check(vol is not None and "configMap" in vol, f"volume {mount['name']} must be a ConfigMap")
check(vol["configMap"]["name"] == cm["metadata"]["name"],
      f"config volume names ConfigMap {vol['configMap']['name']!r}, rendered one is {cm['metadata']['name']!r}")
key = os.path.relpath(config_path, mount["mountPath"])
check(key in cm.get("data", {}), f"ConfigMap has no key {key!r} for {config_path}")
try:
    toml = tomllib.loads(cm["data"][key])
except tomllib.TOMLDecodeError as e:
    fail(f"{key} in the ConfigMap is not valid TOML: {e}")
passed += 1

# Whether hotswap accepts this file (unknown keys, bad values) is checked by the host's own
# parser: the e2e test `deploy::the_configmap_holds_a_hotswap_toml_the_host_accepts`.
check("token" not in toml.get("admin", {}), "admin.token in the ConfigMap: use the Secret instead")
check("password" not in toml.get("registry", {}), "registry.password in the ConfigMap: use a Secret")
check(toml.get("server", {}).get("mode") == "prod", "server.mode must be \"prod\"")
source = toml.get("component", {}).get("source", "")
check(source.startswith("oci://"), f"component.source must be an oci:// reference, got {source!r}")

# Graceful shutdown: the kubelet must not SIGKILL before the drain (after any preStop sleep) ends.
shutdown = duration_seconds(toml.get("server", {}).get("shutdown_timeout", "30s"))
pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
grace = pod.get("terminationGracePeriodSeconds", 30)
check(grace > pre_stop + shutdown,
      f"terminationGracePeriodSeconds ({grace}) must exceed preStop sleep ({pre_stop}s) + "
      f"server.shutdown_timeout ({shutdown:g}s)")

# Ports: container ports match the configured listeners; probes hit the admin port.
ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
admin_port = port_of(toml.get("admin", {}).get("addr", ""))
http_port = port_of(toml.get("server", {}).get("addr", "127.0.0.1:8080"))
check(ports.get("admin") == admin_port,
      f"container port 'admin' is {ports.get('admin')}, [admin] addr listens on {admin_port}")
check(ports.get("http") == http_port,
      f"container port 'http' is {ports.get('http')}, [server] addr listens on {http_port}")
check(not toml["server"]["addr"].startswith("127.") and not toml["admin"]["addr"].startswith("127."),
      "listeners bound to loopback are unreachable from the kubelet and the Service")


def probe_port(probe):
    port = probe["httpGet"]["port"]
    return ports.get(port) if isinstance(port, str) else port


for name, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
    probe = c.get(name)
    check(probe is not None and "httpGet" in probe, f"{name} must be an httpGet probe")
    check(probe["httpGet"].get("path") == path, f"{name} path is {probe['httpGet'].get('path')!r}, want {path}")
    check(probe_port(probe) == admin_port, f"{name} port must be the admin port {admin_port}")
if "startupProbe" in c:
    check(probe_port(c["startupProbe"]) == admin_port, "startupProbe must use the admin port")

# Secrets: the admin token comes from a Secret, never a literal.
env = {e["name"]: e for e in c.get("env", [])}
token = env.get("HOTSWAP_ADMIN_TOKEN")
check(token is not None and "secretKeyRef" in token.get("valueFrom", {}),
      "HOTSWAP_ADMIN_TOKEN must come from a secretKeyRef")
check(not token["valueFrom"]["secretKeyRef"].get("optional", False),
      "the admin token Secret must not be optional")
for name in ("HOTSWAP_REGISTRY_USERNAME", "HOTSWAP_REGISTRY_PASSWORD"):
    if name in env:
        check("secretKeyRef" in env[name].get("valueFrom", {}), f"{name} must come from a secretKeyRef")

# Security context.
psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
# The container's settings override the pod's.
check(csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, "runAsNonRoot must be true")
check(csc.get("runAsUser", psc.get("runAsUser", 0)) != 0, "runAsUser must be set and not 0")
check(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true")
check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")
check("ALL" in csc.get("capabilities", {}).get("drop", []), "capabilities must drop ALL")

# The cache dir is a writable volume (the root filesystem is read-only).
cache_dir = toml.get("cache", {}).get("dir")
check(cache_dir is not None, "[cache] dir must be set (the default under $HOME is read-only here)")
cache_mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"].rstrip("/") == cache_dir.rstrip("/")), None)
check(cache_mount is not None and not cache_mount.get("readOnly", False),
      f"[cache] dir {cache_dir} must be a writable volumeMount")

# Resources: requests within limits; the memory limit holds the base plus at least one guest
# at max_memory.
def mebibytes(q):
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", str(q))
    if not m:
        fail(f"cannot parse quantity {q!r}")
    return int(m.group(1)) * {None: 1 / 2**20, "Ki": 1 / 1024, "Mi": 1, "Gi": 1024}[m.group(2)]


res = c.get("resources", {})
check("memory" in res.get("limits", {}) and "memory" in res.get("requests", {}),
      "memory requests and limits must be set")
check(mebibytes(res["requests"]["memory"]) <= mebibytes(res["limits"]["memory"]),
      "memory request exceeds the limit")
m = re.fullmatch(r"(\d+)\s*MiB", toml.get("limits", {}).get("max_memory", "128MiB"))
check(m is not None, "limits.max_memory must be written in MiB for this check")
check(mebibytes(res["limits"]["memory"]) >= 30 + int(m.group(1)),
      f"memory limit {res['limits']['memory']} cannot hold ~30Mi base + one guest at {m.group(0)}")

# Rollout and disruption budget.
replicas = dep["spec"].get("replicas", 1)
ru = dep["spec"].get("strategy", {}).get("rollingUpdate", {})
check(ru.get("maxUnavailable") == 0, "rollingUpdate.maxUnavailable must be 0")
check(pdb["apiVersion"] == "policy/v1", "the PodDisruptionBudget must be policy/v1")
check(isinstance(pdb["spec"].get("minAvailable"), int) and pdb["spec"]["minAvailable"] < replicas,
      f"PDB minAvailable ({pdb['spec'].get('minAvailable')}) must be an integer below replicas ({replicas})")

# Selectors: the Service and PDB select the pods; the Service targets the http port only.
labels = dep["spec"]["template"]["metadata"].get("labels", {})
for what, sel in (("Deployment", dep["spec"]["selector"]["matchLabels"]),
                  ("Service", svc["spec"]["selector"]),
                  ("PodDisruptionBudget", pdb["spec"]["selector"]["matchLabels"])):
    check(sel and all(labels.get(k) == v for k, v in sel.items()),
          f"{what} selector {sel} does not match the pod labels {labels}")
svc_targets = [p.get("targetPort") for p in svc["spec"]["ports"]]
check(svc_targets in (["http"], [http_port]), f"Service must target only the http port, got {svc_targets}")
check(svc["spec"].get("type", "ClusterIP") == "ClusterIP", "Service must be ClusterIP")

# Prometheus scrape annotations point at the admin port.
ann = dep["spec"]["template"]["metadata"].get("annotations", {})
check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(admin_port),
      "prometheus.io/scrape and prometheus.io/port (admin port) annotations are required")

# The example Secret, if present, is the one the Deployment reads.
example = os.path.join(manifest_dir, "secret.example.yaml")
if os.path.exists(example):
    secrets = [d for d in yaml.safe_load_all(open(example)) if d]
    ref = token["valueFrom"]["secretKeyRef"]
    check(any(s["kind"] == "Secret" and s["metadata"]["name"] == ref["name"]
              and ref["key"] in s.get("stringData", s.get("data", {})) for s in secrets),
          f"secret.example.yaml must define Secret {ref['name']} with key {ref['key']}")

print(f"deploy manifests: {passed} checks passed")
PY
