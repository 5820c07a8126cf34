"""Mapping files: which CRM module and field holds what, who owns each field, tiers, flags and tasks."""

from connector.mapping.loader import default_mapping_path, load_mapping, parse_mapping
from connector.mapping.models import EntityMap, FieldMap, Mapping, TaskRule

__all__ = [
    "EntityMap", "FieldMap", "Mapping", "TaskRule", "default_mapping_path", "load_mapping", "parse_mapping"
]
