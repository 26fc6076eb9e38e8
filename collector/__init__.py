"""Collector: enroll devices and poll them over SSH for fresh signed dossiers."""

__all__: list[str] = []
