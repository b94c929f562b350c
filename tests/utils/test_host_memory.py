"""Host-memory retention: page faults of repeated attack steps, unchanged results, the CLI's switch, the record.

Every check that changes the allocator runs in a child process, so the test session's own allocator is untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from volrob.utils import host_memory

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or host_memory._libc_mallopt() is None,
                           reason="mallopt needs glibc")

# Four exact-gradient attack steps (tiny UNet, 72^3 volume, 48^3 windows): the gradient's bytes, and the memory
# first touched through page faults in each step.
_STEPS = textwrap.dedent("""
    import hashlib, json, resource, sys
    import torch
    from volrob.attacks.losses import resolve_loss
    from volrob.inference.predictor import Predictor, SlidingWindowConfig
    from volrob.models import create
    from volrob.utils import host_memory
    active = host_memory.retain_freed_memory() if sys.argv[1] == "retain" else False
    again = host_memory.retain_freed_memory() if sys.argv[1] == "retain" else False
    torch.manual_seed(0)
    net = create("unet", in_channels=4, out_channels=3, preset="tiny", roi_size=(48, 48, 48)).eval()
    window = SlidingWindowConfig(roi_size=(48, 48, 48), overlap=0.5, mode="gaussian", sw_batch_size=2)
    pred = Predictor(net, mean=[0.5] * 4, std=[0.25] * 4, window=window).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 4, 72, 72, 72, generator=gen).requires_grad_(True)
    target = (torch.rand(1, 3, 72, 72, 72, generator=gen) > 0.9).float()
    faulted, hashes = [], []
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        (grad,) = torch.autograd.grad(resolve_loss("auto", "regions")(pred(x), target), x)
        faulted.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) * resource.getpagesize() / 2**20)
        hashes.append(hashlib.sha256(grad.numpy().tobytes()).hexdigest())
    print(json.dumps({"active": active, "again": again, "policy": host_memory.host_memory_policy(),
                      "faulted_mb": faulted, "hashes": hashes}))
""")


def _steps(policy: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _STEPS, policy], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@glibc
def test_retention_removes_page_faults_and_changes_no_result() -> None:
    system, retain = _steps("system"), _steps("retain")
    assert system["policy"] == "system" and system["active"] is False
    assert retain["policy"] == "retain" and retain["active"] is True and retain["again"] is True  # idempotent
    # the same gradient, bit for bit, in every step and under both policies
    assert len(set(system["hashes"] + retain["hashes"])) == 1
    # default glibc: each step maps and first-touches its window graphs again (hundreds of MB here)
    assert min(system["faulted_mb"][1:]) > 100
    # retained: from the third step on the freed blocks are reused
    assert sum(retain["faulted_mb"][2:]) < 0.1 * sum(system["faulted_mb"][2:])


def test_without_mallopt_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_memory, "_libc_mallopt", lambda: None)
    monkeypatch.setattr(host_memory, "_retained", False)
    assert host_memory.retain_freed_memory() is False
    assert host_memory.host_memory_policy() == "system"


def test_refused_setting_reports_inactive(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 0 if param == host_memory._M_TRIM_THRESHOLD else 1

    monkeypatch.setattr(host_memory, "_libc_mallopt", lambda: mallopt)
    monkeypatch.setattr(host_memory, "_retained", False)
    assert host_memory.retain_freed_memory() is False
    assert host_memory.host_memory_policy() == "system"
    assert (host_memory._M_MMAP_THRESHOLD, host_memory.MMAP_THRESHOLD) in calls


@pytest.mark.parametrize("value", ["0", "false", "No", " off "])
def test_environment_switch_disables(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(host_memory.ENV_VAR, value)
    monkeypatch.setattr(host_memory, "_libc_mallopt", lambda: pytest.fail("mallopt must not be called"))
    monkeypatch.setattr(host_memory, "_retained", False)
    assert host_memory.retain_unless_disabled() is False


@glibc
@pytest.mark.parametrize(("env", "policy"), [(None, "retain"), ("0", "system")])
def test_cli_retains_unless_disabled(env: str | None, policy: str) -> None:
    code = ("import sys; from volrob.cli.main import main; from volrob.utils.runtime import environment\n"
            "rc = main(['models']); print(environment()['host_memory'], file=sys.stderr); sys.exit(rc)")
    child_env = {k: v for k, v in os.environ.items() if k != host_memory.ENV_VAR}
    if env is not None:
        child_env[host_memory.ENV_VAR] = env
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == policy
