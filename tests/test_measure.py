from __future__ import annotations

import numpy as np

from harness.measure import host_info, peak_rss_bytes


def test_peak_rss_sees_a_short_spike() -> None:
    before = peak_rss_bytes()
    spike = np.ones(200 * 2**20 // 8)  # 200 MiB, touched, then freed at once
    del spike
    after = peak_rss_bytes()
    assert before is not None and after is not None
    assert after - before > 150 * 2**20


def test_host_info_has_provenance() -> None:
    info = host_info()
    assert info["cpu_count"] >= 1 and info["python"].count(".") == 2
    assert "git_commit" in info


def test_vmhwm_reset_gives_a_peak_per_phase() -> None:
    from harness.measure import reset_peak_rss

    spike = np.ones(300 * 2**20 // 8)  # 300 MiB touched
    del spike
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
