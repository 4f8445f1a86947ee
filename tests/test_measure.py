from __future__ import annotations

import numpy as np

from harness.measure import host_info, peak_rss_bytes, summarize


def test_peak_rss_sees_a_short_spike() -> None:
    before = peak_rss_bytes()
    spike = np.ones(200 * 2**20 // 8)  # 200 MiB, touched, then freed at once
    del spike
    after = peak_rss_bytes()
    assert before is not None and after is not None
    assert after - before > 150 * 2**20


def test_summarize_known_values() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median"] == 3.0 and s["q1"] == 2.0 and s["q3"] == 4.0 and s["iqr"] == 2.0
    assert s["min"] == 1.0 and s["n"] == 5


def test_host_info_has_provenance() -> None:
    info = host_info()
    assert info["cpu_count"] >= 1 and info["python"].count(".") == 2
    assert "git_commit" in info
