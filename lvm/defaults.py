"""The product's defaults, each declared once and read by the library, the flow's signature, `lvm run --help`,
`lvm train --help` and the benchmarks. Plain values, no imports: the command line shows them without loading
torch. Why each value is what it is lives beside its user (TrainConfig, lvm.decision, lvm.data)."""

CONTEXT = 5                              # sentences of context per window
EPOCHS = 20                              # TrainConfig.epochs (early stopping usually ends sooner)
BATCH_SIZE = 256                         # TrainConfig.batch_size
LR = 1e-3                                # TrainConfig.lr (AdamW)
FRACTIONS = (0.8, 0.1, 0.1)              # train, val, test shares of the articles
SPLIT_METHOD = "hash"                    # an article's part depends on its id and the seed only
SEED = 0
ARCHITECTURES = ("lstm", "mamba2", "transformer")  # what the train flow trains
RUNNER = "threads"                       # the flow's task runner

# lvm.decision: the gates a deployed model passes, and the champion/challenger margin
MIN_FORWARD_MARGIN = 0.0
MIN_SHUFFLE_DROP = 0.005
MIN_LAST_INPUT_GAIN = 0.0
MAX_PARAPHRASE_RATIO = 2.0
MIN_IMPROVEMENT = 0.002
# the seed's thresholds (GTR-T5 768-D) and the margin a run's derived deploy threshold keeps above its baseline one
SEED_BASELINE_THRESHOLD = 0.48
SEED_DEPLOY_THRESHOLD = 0.55
SEED_GLOBAL_MEAN = 0.4816
SEED_DEPLOY_MARGIN = SEED_DEPLOY_THRESHOLD - SEED_GLOBAL_MEAN  # 0.0684: a derived deploy threshold's lead
