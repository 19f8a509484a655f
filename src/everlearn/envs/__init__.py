"""Environments: functional (gymnax) tasks and Gymnasium context wrappers, one family table."""

from everlearn.envs.families import FAMILIES, EnvFamily, get_family

__all__ = ["FAMILIES", "EnvFamily", "get_family"]
