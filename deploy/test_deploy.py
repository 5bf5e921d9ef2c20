"""Checks of the deployment artifacts: task-definition.json against the ECS API's own input shape
(botocore ships the service model), and the Dockerfile's runtime stage against the libraries the
release binary really links. Run by scripts/test.sh after the release build."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TASK = json.loads((ROOT / "task-definition.json").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
# Packages debian:12-slim already has; everything else must come from the runtime stage's list.
BASE_IMAGE = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}
# DATA-MODEL.md: the environment the worker reads.
CONTRACT_ENV = {"SHOW_ID", "STAGE_TOKEN", "STAGE_ARN", "STAGE_EVENTS_URL", "STAGE_WHIP_URL", "CHANNEL_ARN",
                "INGEST_URL", "STREAM_KEY", "INGEST_CA_FILE", "TRACKLIST_ID", "TRACKLIST_BUCKET", "SHOWS_TABLE",
                "PARTICIPANTS_TABLE", "ROUTING_TABLE", "TRACKLISTS_TABLE", "AWS_REGION", "AWS_ENDPOINT_URL",
                "ROUTING_POLL_MS", "HEARTBEAT_INTERVAL_S", "HEALTH_PORT", "LOG_LEVEL", "LOG_FORMAT"}


def test_task_definition_is_a_valid_register_task_definition_input():
    import botocore.session
    from botocore.validate import ParamValidator
    op = botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition")
    report = ParamValidator().validate(TASK, op.input_shape)
    assert not report.has_errors(), report.generate_report()


def test_task_definition_meets_the_worker_contract():
    assert TASK["requiresCompatibilities"] == ["FARGATE"] and TASK["networkMode"] == "awsvpc"
    # The smallest Fargate size; the README's soak figures justify it.
    assert (TASK["cpu"], TASK["memory"]) == ("256", "512")
    (c,) = TASK["containerDefinitions"]
    assert c["stopTimeout"] >= 15, "graceful stop needs up to 10 s"
    assert c["healthCheck"]["command"][-1] == "healthcheck"
    assert c["linuxParameters"]["initProcessEnabled"] is True
    secrets = {s["name"]: s["valueFrom"] for s in c["secrets"]}
    assert set(secrets) == {"STAGE_TOKEN", "STREAM_KEY"}
    assert all(v.startswith("arn:aws:secretsmanager:") for v in secrets.values())
    env = {e["name"] for e in c["environment"]}
    assert env <= CONTRACT_ENV, f"unknown variables: {env - CONTRACT_ENV}"
    assert not env & {"STAGE_TOKEN", "STREAM_KEY"}, "secrets must not be plain environment"
    log = c["logConfiguration"]
    assert log["logDriver"] == "awslogs" and log["options"]["mode"] == "non-blocking"
    assert c["portMappings"][0]["containerPort"] == 8080


def runtime_packages():
    block = DOCKERFILE.split("# runtime-packages-begin", 1)[1].split("# runtime-packages-end", 1)[0]
    words = re.findall(r"[a-z0-9][a-z0-9.+-]+", block.split("--no-install-recommends", 1)[1].split("&&", 1)[0])
    return set(words)


def dependency_closure(packages):
    out = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                          "--no-breaks", "--no-replaces", "--no-enhances", *sorted(packages)],
                         capture_output=True, text=True, check=True).stdout
    return {line.strip().split(":")[0] for line in out.splitlines() if line and not line.startswith(" ")}


def test_dockerfile_runtime_stage_provides_every_library_the_binary_links():
    binary = os.environ.get("SHELCASTER_RELEASE_BINARY")
    if not binary or not Path(binary).exists():
        pytest.skip("SHELCASTER_RELEASE_BINARY not built (scripts/test.sh builds it)")
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", subprocess.run(
        ["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout)
    assert needed, "readelf found no NEEDED entries"
    assert not any(n.startswith("libswift") or n.startswith("libFoundation") for n in needed), \
        f"the Swift runtime must be static: {needed}"
    available = dependency_closure(runtime_packages()) | BASE_IMAGE
    missing = {}
    for lib in needed:
        owner = subprocess.run(["dpkg", "-S", f"*/{lib}"], capture_output=True, text=True)
        pkgs = {line.split(":")[0] for line in owner.stdout.splitlines() if "-dev" not in line.split(":")[0]}
        if not pkgs & available:
            missing[lib] = sorted(pkgs)
    assert not missing, f"libraries the runtime image would lack: {missing}"
