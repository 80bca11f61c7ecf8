"""What the pipeline keeps between runs: the model registry (versions, aliases, lineage) and the run folders."""
