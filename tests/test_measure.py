from __future__ import annotations

import mmap

import numpy as np

from harness import measure
from harness.measure import host_info, peak_rss_bytes, reset_peak_rss


def test_peak_rss_sees_a_short_spike() -> None:
    reset_peak_rss()  # an earlier test's peak may exceed this one's
    before = peak_rss_bytes()
    # 200 MiB of fresh pages, touched, then freed at once. mmap, not numpy: once a framework's
    # allocator has replaced malloc in this process, freed memory stays resident and would be
    # reused without raising the RSS.
    spike = mmap.mmap(-1, 200 * 2**20)
    np.frombuffer(spike, np.uint8)[:] = 1
    spike.close()
    after = peak_rss_bytes()
    assert before is not None and after is not None
    assert after - before > 150 * 2**20


def test_host_info_has_provenance() -> None:
    info = host_info()
    assert info["cpu_count"] >= 1 and info["python"].count(".") == 2
    assert "git_commit" in info


def test_vmhwm_reset_gives_a_peak_per_phase() -> None:
    import mmap

    from harness.measure import reset_peak_rss

    # 300 MiB touched, then unmapped: an anonymous mapping of its own, so the C heap's state
    # (what earlier tests freed or trimmed) cannot keep it resident
    spike = mmap.mmap(-1, 300 * 2**20)
    for i in range(0, len(spike), mmap.PAGESIZE):
        spike[i] = 1
    spike.close()
    high = peak_rss_bytes()
    assert reset_peak_rss()
    after = peak_rss_bytes()
    assert high is not None and after is not None
    assert high - after > 250 * 2**20  # the old spike no longer counts


def test_threads_are_pinned_and_read_back() -> None:
    import subprocess
    import sys

    code = ("from harness.measure import set_threads; import os, json;"
            "print(json.dumps(set_threads(1)), len(os.sched_getaffinity(0)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().endswith(" 1") and '"threads": 1' in out


def test_machine_probe_covers_every_cpu_and_restores_the_mask() -> None:
    import os

    from harness.measure import machine_probe

    mask = os.sched_getaffinity(0)
    probe = machine_probe(0.02)
    assert set(probe) == mask and os.sched_getaffinity(0) == mask
    assert all(1e-5 < t < 0.1 for t in probe.values())


def test_machine_probe_sees_a_cpu_shared_with_a_busy_process() -> None:
    import os
    import subprocess
    import sys

    from harness.measure import machine_probe

    mask = os.sched_getaffinity(0)
    cpu = max(mask)
    os.sched_setaffinity(0, {cpu})
    try:
        quiet = machine_probe(0.3)[cpu]
        busy = subprocess.Popen([sys.executable, "-c", "print(flush=True)\nwhile True: pass"],
                                stdout=subprocess.PIPE)  # inherits this thread's mask: {cpu}
        try:
            busy.stdout.readline()  # spinning from now on
            shared = machine_probe(0.3)[cpu]
        finally:
            busy.kill()
            busy.wait()
    finally:
        os.sched_setaffinity(0, mask)
    assert shared > 1.4 * quiet  # the scheduler halves the probe's share of the CPU


def test_the_recorded_environment_is_an_allowlist_with_credentials_redacted() -> None:
    """Framework variables by name, never by prefix (Terraform's TF_VAR_* and TF_TOKEN_* are
    not TensorFlow's), and a credential-looking value is redacted even on the allowlist."""
    environ = {
        "OMP_NUM_THREADS": "2", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "TF_CPP_MIN_LOG_LEVEL": "2", "TORCHINDUCTOR_CACHE_DIR": "/tmp/inductor",
        "TF_VAR_db_password": "hunter2", "TF_TOKEN_app_terraform_io": "abc.def",
        "CUDA_SECRET_SAUCE": "x", "TORCH_HOME": "/home/me/.cache", "AWS_SECRET_ACCESS_KEY": "k",
        "LD_PRELOAD": "https://user:pa55@example.com/lib.so",
        "JAX_COMPILATION_CACHE_DIR": "ghp" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
        "TF_XLA_FLAGS": "--tf_xla_auto_jit=2 token=abc",
    }
    env = measure.recorded_env(environ)
    assert env == {
        "OMP_NUM_THREADS": "2", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "TF_CPP_MIN_LOG_LEVEL": "2", "TORCHINDUCTOR_CACHE_DIR": "/tmp/inductor",
        "LD_PRELOAD": "REDACTED", "JAX_COMPILATION_CACHE_DIR": "REDACTED",
        "TF_XLA_FLAGS": "REDACTED"}
    assert set(measure.host_info()["env"]) <= measure.ENV_ALLOWLIST
