"""The sentence table: its schema and checks, reading, writing, hashing and splitting tables, sharded folders, and
the seed `.npz` format."""
