"""README: `make run` needs no network and sends nothing anywhere. A flow run (with Prefect's temporary server, as
`make run` has it) in processes where every name resolution but the loopback's is refused and recorded: none is
tried. The user's environment does not turn analytics off here: the project must."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

FLOW = """
from flows.train_lvm import train_lvm
r = train_lvm(data="builtin", encoder="hash:64", architectures=["lstm"], epochs=1, ensemble=False,
              model_options={"*": {"hidden": 8, "layers": 1}}, challenge_production=False)
print("DECISION", r.decision)
"""


def test_a_flow_run_resolves_no_name_but_the_loopback(tmp_path):
    log = tmp_path / "resolved.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=os.pathsep.join([str(Path(__file__).parent / "data" / "offline"), str(ROOT)]),
               LVM_OFFLINE_LOG=str(log), PREFECT_HOME=str(tmp_path / "prefect"), LVM_DATA_DIR=str(tmp_path / "data"))
    res = subprocess.run([sys.executable, "-c", FLOW], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0 and "DECISION" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]
    tried = log.read_text() if log.exists() else ""
    assert tried == "", f"names resolved during the run: {tried}"
    assert "telemetry" not in res.stderr.lower()
