"""Fixtures for the privacy tests: one torch thread, a test key, a shop with raw shopper ids."""

from __future__ import annotations

import pandas as pd
import privacy_helpers
import pytest
from privacy_helpers import SECRET

from shoprec.privacy.pseudonym import Pseudonymizer


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # The CI machine has 2 cores shared with other jobs; torch's second thread only spins there.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer.from_secret(SECRET, key_id="k2026")


@pytest.fixture
def raw_events() -> pd.DataFrame:
    """A shop export with raw customer ids, names and e-mails: what must never be stored."""
    return privacy_helpers.raw_events()
