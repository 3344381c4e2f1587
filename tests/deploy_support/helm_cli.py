#!/usr/bin/env python3
"""A `helm` command for the documentation tests: the subset of Helm's command line that the
docs use (install, upgrade, status, uninstall; -n/--namespace, --create-namespace, -f/--values,
--set, --wait), carried out by Helm's own code through helm_driver.py. The kubeconfig is
$KUBECONFIG, as for the real command."""
import argparse
import json
import os
import subprocess
import sys

import yaml


def set_value(values, assignment):
    """`--set a.b=c`: a nested key; true/false and integers as Helm reads them."""
    path, _, raw = assignment.partition("=")
    value = {"true": True, "false": False}.get(raw, raw)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    *parents, leaf = path.split(".")
    for key in parents:
        values = values.setdefault(key, {})
    values[leaf] = value


def merge(into, other):
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def main():
    parser = argparse.ArgumentParser(prog="helm")
    parser.add_argument("command", choices=["install", "upgrade", "status", "uninstall"])
    parser.add_argument("release")
    parser.add_argument("chart", nargs="?")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--create-namespace", action="store_true")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--wait", action="store_true")
    args = parser.parse_args()

    values = {}
    for path in args.values:
        with open(path) as f:
            merge(values, yaml.safe_load(f) or {})
    for assignment in args.set:
        set_value(values, assignment)
    driver = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helm_driver.py")
    kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    command = [sys.executable, driver, args.command, kubeconfig, args.namespace]
    if args.command in ("install", "upgrade"):
        command += [args.chart, args.release, json.dumps(values), "wait" if args.wait else "no-wait"]
    else:
        command += [args.release]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr.replace("helm_driver", "helm"))
        sys.exit(1)
    release = json.loads(done.stdout)
    info = release.get("info", {})
    if args.command == "uninstall":
        print(f'release "{args.release}" uninstalled')
    else:
        print(f"NAME: {release.get('name')}")
        print(f"NAMESPACE: {release.get('namespace')}")
        print(f"STATUS: {info.get('status')}")
        print(f"REVISION: {release.get('version')}")
        if info.get("notes"):
            print("NOTES:\n" + info["notes"])


if __name__ == "__main__":
    main()
