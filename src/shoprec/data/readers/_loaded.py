"""`LoadedData`, what every reader returns.

Its own module so that the readers and the package's entry points (`shoprec.data.readers`) can
both import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoprec.data.dataset import Dataset
from shoprec.data.schema import Catalogue, Interactions, QualityReport


@dataclass
class LoadedData:
    """What a reader returns: the cleaned log, the catalogue (if any) and the quality report."""

    interactions: Interactions
    catalogue: Catalogue | None
    report: QualityReport

    def dataset(self) -> Dataset:
        """The log indexed against vocabularies of its users and items (and catalogue items)."""
        return Dataset.from_interactions(self.interactions, self.catalogue)
