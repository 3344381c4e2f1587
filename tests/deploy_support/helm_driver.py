#!/usr/bin/env python3
"""Runs one Helm action through Helm's own Go code (the helm-sdkpy package, which ships Helm v4
as a shared library) and prints its result as JSON; the chart tests call it.

    helm_driver.py lint      KUBECONFIG NAMESPACE CHART
    helm_driver.py install   KUBECONFIG NAMESPACE CHART RELEASE VALUES_JSON WAIT
    helm_driver.py upgrade   KUBECONFIG NAMESPACE CHART RELEASE VALUES_JSON WAIT
    helm_driver.py status    KUBECONFIG NAMESPACE RELEASE
    helm_driver.py uninstall KUBECONFIG NAMESPACE RELEASE

A failed action exits with status 1 and Helm's message on standard error.
"""
import asyncio
import json
import sys

try:
    import helm_sdkpy as helm
except ImportError as e:  # pragma: no cover - set-up problem, not a test result
    sys.exit(f"helm-sdkpy is missing ({e}); run scripts/install-test-deps.sh")


async def run(action, kubeconfig, namespace, *rest):
    config = helm.Configuration(namespace=namespace, kubeconfig=kubeconfig)
    if action == "lint":
        (chart,) = rest
        return await helm.Lint(config).run(chart)
    if action in ("install", "upgrade"):
        chart, release, values, wait = rest
        values = json.loads(values) or None
        wait = wait == "wait"
        if action == "install":
            return await helm.Install(config).run(
                release, chart, values=values, create_namespace=True, wait=wait, timeout=60)
        return await helm.Upgrade(config).run(release, chart, values=values, wait=wait, timeout=60)
    if action == "status":
        (release,) = rest
        return await helm.Status(config).run(release)
    if action == "uninstall":
        (release,) = rest
        return await helm.Uninstall(config).run(release, wait=True, timeout=60)
    raise SystemExit(f"unknown action {action!r}")


def main():
    try:
        result = asyncio.run(run(*sys.argv[1:]))
    except helm.HelmError as e:
        sys.exit(f"helm {sys.argv[1]} failed: {e}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
