"""Push: CRM change notifications turned into debounced incremental runs (channels, debouncer, hub)."""
