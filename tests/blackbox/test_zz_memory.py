"""Runs last (file order): the shared portier's peak RSS after the whole battery."""
from conftest import figure


def test_peak_memory_after_battery(env):
    idle, peak = env.idle_hwm, env.gw.hwm()
    figure("memory (shared portier)", f"VmHWM idle {idle / 2**20:.1f} MiB, after battery {peak / 2**20:.1f} MiB, "
           f"VmRSS now {env.gw.rss() / 2**20:.1f} MiB")
    assert env.gw.alive(), "portier died during the battery"
    assert peak - idle <= 200 * 2**20, f"peak grew by {(peak - idle) / 2**20:.1f} MiB"
