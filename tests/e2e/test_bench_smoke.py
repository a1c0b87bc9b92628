"""`bench/run.py systems`, `memory`, `fanout` and `fanout-hosts` keep working: every scenario at tiny counts,
nginxws and its Python peer (`bench/run.py` without a subcommand is `systems`); the channels
fan-out beside nginx + nchan (which the bench installs through apt when it is missing).

No figure is asserted (the machines are shared and noisy); the run must only
deliver every push exactly once to the right client (every publish to every
subscriber, in order), which the harness checks and reports with its exit status.
"""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def test_bench_smoke_run_loses_and_misroutes_nothing(nginxws_bin, tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCH), "systems", "--smoke", "--no-venv", "--systems", "nginxws,websockets",
         "--nginxws-bin", nginxws_bin, "--time-limit", "120"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| failures: handshakes / lost / misrouted / duplicated / push errors | 0 / 0 / 0 / 0 / 0 |" in result.stdout


def test_bench_runs_a_baseline_build_beside_nginxws_with_a_ratio_column(nginxws_bin, tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--no-venv", "--systems", "nginxws", "--nginxws-workers", "1",
         "--scenarios", "push,memory", "--nginxws-bin", nginxws_bin, "--baseline-bin", nginxws_bin,
         "--time-limit", "120"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| metric | nginxws 1w | baseline 1w | nginxws 1w / baseline 1w |" in result.stdout
    assert "| failures: handshakes / lost / misrouted / duplicated / push errors | 0 / 0 / 0 / 0 / 0 | 0 / 0 / 0 / 0 / 0 |" in result.stdout


def test_bench_runs_nginxws_and_its_peer_with_permessage_deflate(nginxws_bin, tmp_path):
    """The load generator inflates what these systems compress (its protocol probe fails the
    system unless the welcome, an echo and a push arrive compressed), and loses nothing."""
    result = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--no-venv", "--systems",
         "nginxws-deflate,nginxws-deflate-ctx,websockets-deflate", "--nginxws-workers", "1",
         "--nginxws-bin", nginxws_bin, "--time-limit", "120"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ("| metric | nginxws-deflate 1w | nginxws-deflate-ctx 1w | websockets-deflate "
            "| nginxws-deflate 1w / websockets-deflate |") in result.stdout
    assert "| failures: handshakes / lost / misrouted / duplicated / push errors | 0 / 0 / 0 / 0 / 0 | 0 / 0 / 0 / 0 / 0 | 0 / 0 / 0 / 0 / 0 |" in result.stdout


def test_memory_owners_reports_bytes_per_connection_by_library(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCH), "memory", "--clients", "50", "--top", "5"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "50 idle connections:" in result.stdout
    for owner in ("| trio |", "| wsproto |", "| nginxws |"):
        assert owner in result.stdout


FANOUT_TINY = ["fanout", "--quick", "--no-venv", "--subscribers", "100", "--publishes", "10",
               "--time-limit", "120"]
FANOUT_FAILURES = "| lost deliveries / order violations / publish errors |"


@pytest.mark.apt
def test_fanout_reaches_every_nchan_subscriber_in_order(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCH), *FANOUT_TINY, "--systems", "nchan"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| metric | nchan 1w | nchan 2w |" in result.stdout
    assert f"{FANOUT_FAILURES} 0 / 0 / 0 | 0 / 0 / 0 |" in result.stdout


@pytest.mark.apt
def test_fanout_runs_nginxws_channels_beside_nchan_with_issue_11_ratios(nginxws_bin, tmp_path):
    """nginxws with 1 and 2 workers and nchan with 1 and 2, in one run: every publish reaches
    every subscriber in order, and the targets table has a ratio on each line."""
    result = subprocess.run(
        [sys.executable, str(BENCH), *FANOUT_TINY, "--systems", "nginxws,nchan",
         "--nginxws-bin", nginxws_bin],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ("| metric | nginxws 1w | nginxws 2w | nchan 1w | nchan 2w | nginxws 1w / nchan 1w |"
            in result.stdout)
    assert f"{FANOUT_FAILURES} 0 / 0 / 0 | 0 / 0 / 0 | 0 / 0 / 0 | 0 / 0 / 0 |" in result.stdout
    targets = [line for line in result.stdout.splitlines() if line.startswith("| deliveries/s, ")
               or line.startswith("| server CPU per delivery ≤")]
    assert len(targets) == 3, result.stdout
    assert all("| — |" not in line for line in targets), result.stdout


@pytest.mark.apt
def test_fanout_across_two_instances_sharing_redis_runs_nginxws_beside_nchan(nginxws_bin, tmp_path):
    """fanout-hosts: two instances of each system on one redis-server; every publish reaches
    every subscriber on both, in order, and Redis's CPU has a row of its own."""
    result = subprocess.run(
        [sys.executable, str(BENCH), "fanout-hosts", "--quick", "--no-venv", "--subscribers", "100",
         "--publishes", "10", "--time-limit", "120", "--systems", "nginxws,nchan", "--nginxws-workers", "1",
         "--nchan-workers", "1", "--nginxws-bin", nginxws_bin],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| metric | nginxws 1w | nchan 1w | nginxws 1w / nchan 1w |" in result.stdout
    assert "| redis-server CPU per delivery, µs |" in result.stdout
    assert f"{FANOUT_FAILURES} 0 / 0 / 0 | 0 / 0 / 0 |" in result.stdout
