"""Offline data: Minari datasets in and out (`minari_io`), and what is built on them."""

from everlearn.data.minari_io import (
    Episode,
    Transitions,
    list_local,
    load_transitions,
    write_dataset,
)

__all__ = ["Episode", "Transitions", "list_local", "load_transitions", "write_dataset"]
