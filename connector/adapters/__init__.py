"""CRM adapters: the vendor-specific side of the boundary described in `base.py`."""
