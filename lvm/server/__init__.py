"""The LVM server: serves the model a registry alias points to (``lvm serve`` or ``python -m lvm.server``).

Nothing is imported here, so that ``lvm.server.options`` can check the start-up options before torch is loaded.
"""
