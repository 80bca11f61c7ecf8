"""lvm-pipeline's library (never imports Prefect): `lvm.load` is its Python API (lvm.api); the rest by concern:
data/, ingest/, models/, train/, evaluation/, diagnosis/, store/, server/, util/."""


def load(ref="production", registry=None):
    """A trained model as a Python object: `lvm.load("production")`, `lvm.load("v3")` or `lvm.load(MODEL_DIR)`
    gives a `lvm.api.Predictor` with `.predict(contexts, article=None)` and `.next(sentences, k)`."""
    import importlib  # not an import statement: the package's face carries no arrow to everything lvm.api reads

    return importlib.import_module("lvm.api").load(ref, registry)
