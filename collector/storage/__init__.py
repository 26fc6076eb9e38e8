"""The envelope store's parts, by job: `layout` (names, records), `durable` (crash-safe
writes), `index` (SQLite), `states` (device states), `pruning`, and `interface` (the
`EnvelopeStore` protocol callers rely on). `collector.store.Store` puts them together."""

from .interface import EnvelopeStore

__all__ = ["EnvelopeStore"]
