"""Child process for tests/test_train.py's kill-and-resume test (not a test module itself).

usage: python tests/_train_child.py TABLE.parquet OUT_DIR CONFIG_JSON SLEEP_SECONDS [fresh]

Fits on the table's default article split (seed 0) and sleeps in the epoch callback, so that the parent can
SIGKILL it between (or during) epochs. It resumes from OUT_DIR's checkpoint unless `fresh` is given.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvm.data.dataset import read_table, split_articles  # noqa: E402
from lvm.data.table import window_targets  # noqa: E402
from lvm.train.config import TrainConfig  # noqa: E402
from lvm.train.trainer import fit


def windows(table, context):
    split = split_articles(table, (0.8, 0.1, 0.1), 0, method="permutation")  # as tests/conftest.train_windows
    return (window_targets(table.article_id, table.position, context, split.train),
            window_targets(table.article_id, table.position, context, split.val))


def main():
    table_path, out_dir, cfg_json, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    cfg = TrainConfig.from_dict(json.loads(cfg_json))
    table = read_table(table_path)
    train_t, val_t = windows(table, cfg.context)

    def slow(record):
        print(f"epoch {record['epoch']} done", flush=True)
        time.sleep(pause)

    fit(cfg, table.vectors, train_t, val_t, out_dir, callback=slow, resume=sys.argv[5:] != ["fresh"])


if __name__ == "__main__":
    main()
