"""Ingestion: text corpora in, embedded sentence rows out — the corpus readers, the sentence splitter and its gold-set
scorer, row checks, encoders, the embedding cache, the ONNX backend and the whole build."""
