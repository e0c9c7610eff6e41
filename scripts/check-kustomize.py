#!/usr/bin/env python3
"""Checks the kustomize component for kube-prometheus-stack
(deploy/kubernetes/components/kube-prometheus-stack) and the overlay that uses it
(deploy/kube-prometheus-stack): built, the ServiceMonitor and the PrometheusRule carry
`release: kube-prometheus-stack`, no other resource gets the label, the overlay holds every
resource of deploy/kubernetes/, and an overlay's own patch renames the release (what the
overlay's comment tells users to do).

Built with `kubectl kustomize` (kustomize v5 inside kubectl) when kubectl is installed. Without
it (Debian has neither kustomize nor kubectl), the same checks run on the component applied by
this script: its JSON patches on the resources of deploy/kubernetes/kustomization.yaml, after
checking that it is a kustomize Component whose patches target exactly those two kinds. The
first output line says which of the two ran."""
import copy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

root = Path(__file__).resolve().parent.parent
base = root / "deploy/kubernetes"
component = base / "components/kube-prometheus-stack"
overlay = root / "deploy/kube-prometheus-stack"
RELEASE = "kube-prometheus-stack"
SELECTED = {"ServiceMonitor", "PrometheusRule"}
RENAME = """
patches:
  - target: {group: monitoring.coreos.com, kind: ServiceMonitor}
    patch: '[{"op": "replace", "path": "/metadata/labels/release", "value": "monitoring"}]'
  - target: {group: monitoring.coreos.com, kind: PrometheusRule}
    patch: '[{"op": "replace", "path": "/metadata/labels/release", "value": "monitoring"}]'
"""
problems = []


def base_resources():
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    return [doc for f in kustomization["resources"] for doc in yaml.safe_load_all((base / f).read_text()) if doc]


def kubectl_build(directory):
    run = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"kubectl kustomize {directory}: {run.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


def apply_component(resources, patches):
    """The component's JSON 6902 `add` patches, applied as kustomize applies them."""
    out = copy.deepcopy(resources)
    for patch in patches:
        target = patch["target"]
        for doc in out:
            group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
            if doc["kind"] != target.get("kind") or group != target.get("group", group):
                continue
            for op in yaml.safe_load(patch["patch"]):
                parts = op["path"].strip("/").split("/")
                node = doc
                for part in parts[:-1]:
                    node = node.setdefault(part, {})
                if op["op"] not in ("add", "replace"):
                    problems.append(f"unexpected patch op {op['op']!r}")
                node[parts[-1]] = op["value"]
    return out


def check_labels(resources, release, what):
    kinds = {}
    for doc in resources:
        label = (doc["metadata"].get("labels") or {}).get("release")
        kinds[doc["kind"]] = label
        if doc["kind"] in SELECTED and label != release:
            problems.append(f"{what}: {doc['kind']} {doc['metadata']['name']} has release={label!r}, want {release!r}")
        if doc["kind"] not in SELECTED and label is not None:
            problems.append(f"{what}: {doc['kind']} {doc['metadata']['name']} got release={label!r}")
    missing = SELECTED - set(kinds)
    if missing:
        problems.append(f"{what}: no {', '.join(sorted(missing))}")
    wanted = sorted((d["kind"], d["metadata"]["name"]) for d in base_resources())
    got = sorted((d["kind"], d["metadata"]["name"]) for d in resources)
    if got != wanted:
        problems.append(f"{what}: resources {got} differ from deploy/kubernetes/'s {wanted}")


def main():
    spec = yaml.safe_load((component / "kustomization.yaml").read_text())
    if spec.get("apiVersion") != "kustomize.config.k8s.io/v1alpha1" or spec.get("kind") != "Component":
        problems.append("the component is not a kustomize.config.k8s.io/v1alpha1 Component")
    targeted = {p["target"]["kind"] for p in spec.get("patches", [])}
    if targeted != SELECTED:
        problems.append(f"the component patches {sorted(targeted)}, want {sorted(SELECTED)}")
    used = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    if used.get("components") != ["../kubernetes/components/kube-prometheus-stack"] or used.get("resources") != ["../kubernetes"]:
        problems.append("deploy/kube-prometheus-stack does not build deploy/kubernetes with the component")

    built = shutil.which("kubectl") is not None
    if built:
        print(f"built with {subprocess.run(['kubectl', 'version', '--client'], capture_output=True, text=True).stdout.splitlines()[-1]}")
        check_labels(kubectl_build(overlay), RELEASE, "deploy/kube-prometheus-stack")
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(root / "deploy", Path(tmp) / "deploy")
            renamed = Path(tmp) / "deploy/renamed"
            renamed.mkdir()
            (renamed / "kustomization.yaml").write_text(
                "resources: [../kubernetes]\ncomponents: [../kubernetes/components/kube-prometheus-stack]\n" + RENAME)
            check_labels(kubectl_build(renamed), "monitoring", "an overlay renaming the release")
    else:
        print("no kubectl: the component's patches applied by this script (structure only)")
        check_labels(apply_component(base_resources(), spec.get("patches", [])), RELEASE, "component on deploy/kubernetes")

    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"release={RELEASE} on the ServiceMonitor and the PrometheusRule only"
          + ("; an overlay's patch renames it" if built else ""))


if __name__ == "__main__":
    main()
