"""The hidden-state and pooled terms are exact over 2 mirrored logical CPU devices (accumulation, clipping).

Large (~90 s on 2 cores): the fast path of the same arithmetic, micro-batch
shares normalized by update-wide token and sentence counts, is covered by
`test_hidden_state_terms.py::test_micro_batch_shares_of_the_new_terms_sum_to_the_full_batch`.
"""

import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).with_name("hidden_terms_distributed_run.py")
REPO = SCRIPT.parents[2]


@pytest.mark.large
def test_hidden_state_and_pooled_terms_equal_one_device_over_two_replicas(tmp_path):
    out = tmp_path / "report.json"
    result = subprocess.run([sys.executable, str(SCRIPT), str(out)], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["replicas"] == 2 and report["updates"] == 2
    assert report["max_weight_difference"] < 1e-5
    for name in ("loss", "loss_cos", "loss_hidden_mse", "loss_pooled_cos", "loss_pooled_mse"):
        assert report["single_terms"][name] > 1e-3, name
        assert abs(report["single_terms"][name] - report["mirrored_terms"][name]) < 1e-5, name
