"""Fixtures shared by test modules."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Two intra-op threads on a busy two-core machine slow tiny models down."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
