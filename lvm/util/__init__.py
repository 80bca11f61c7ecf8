"""Small utilities every layer uses: atomic writes, folder locks, paths and data folders, memory allocation, the
hardware, and errors meant for users."""
