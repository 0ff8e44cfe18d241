"""Events and catalogue schemas, readers, cleaning, id vocabularies and splits.

The public surface; the modules hold the details:

* `schema`: `Interactions`, `Catalogue`, `QualityReport`, `EventWeights`, `EVENT_TYPES`
* `vocab`: `Vocabulary`;  `dataset`: `Dataset`
* `readers`: `load`, `load_demo`, `sniff_format`, `FORMATS`, `LoadedData`
* `clean`: `CleanPolicy` (and `clean.clean`)
* `split`: `leave_one_out`, `temporal_split`, `random_holdout`, `k_core`, `Split` (and
  `split.split`, the dispatcher by protocol name)

The functions `clean.clean` and `split.split` are not re-exported here: a package attribute
named like a submodule would hide it (`import shoprec.data.split as s` would give the function).
"""

from shoprec.data.clean import CleanPolicy
from shoprec.data.dataset import Dataset
from shoprec.data.readers import FORMATS, LoadedData, load, load_demo, sniff_format
from shoprec.data.schema import EVENT_TYPES, Catalogue, EventWeights, Interactions, QualityReport
from shoprec.data.split import Split, k_core, leave_one_out, random_holdout, temporal_split
from shoprec.data.vocab import Vocabulary

__all__ = [
    "EVENT_TYPES",
    "FORMATS",
    "Catalogue",
    "CleanPolicy",
    "Dataset",
    "EventWeights",
    "Interactions",
    "LoadedData",
    "QualityReport",
    "Split",
    "Vocabulary",
    "k_core",
    "leave_one_out",
    "load",
    "load_demo",
    "random_holdout",
    "sniff_format",
    "temporal_split",
]
