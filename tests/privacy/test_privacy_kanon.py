"""k-anonymity: the released table is k-anonymous and the report says what changed."""

from __future__ import annotations

import pandas as pd
import pytest

from shoprec.errors import ConfigError, MalformedFileError
from shoprec.privacy.kanon import (
    ML1M_QUASI_IDENTIFIERS,
    group_sizes,
    is_k_anonymous,
    k_anonymise,
    read_ml1m_users,
    zip_hierarchy,
)


def _users() -> pd.DataFrame:
    rows = [
        ("1", "F", 25, 4, "48067"), ("2", "F", 25, 4, "48068"), ("3", "F", 25, 10, "48061"),
        ("4", "M", 35, 12, "10001"), ("5", "M", 35, 17, "10002"), ("6", "M", 45, 12, "10003"),
        ("7", "M", 56, 13, "90210"),
    ]
    return pd.DataFrame(rows, columns=["user", "gender", "age", "occupation", "zip"])


def test_the_result_is_k_anonymous_and_the_report_counts_what_changed():
    result = k_anonymise(_users(), k=3, max_suppression=0.2)
    assert is_k_anonymous(result.frame, ML1M_QUASI_IDENTIFIERS, 3)
    r = result.report
    assert r.rows_before == 7 and r.rows_after + r.rows_suppressed == 7
    assert r.rows_suppressed <= 1  # 20% of 7 rounds down to 1
    assert r.smallest_group_before == 1 and r.smallest_group_after >= 3
    assert r.rows_at_risk_before == 7
    assert any(c.startswith("zip: generalised") for c in r.changes)
    assert list(result.suppressed) == [6] or r.rows_suppressed == 0


def test_a_table_already_k_anonymous_is_released_unchanged():
    frame = pd.DataFrame({"a": ["x", "x", "y", "y"], "b": [1, 1, 2, 2]})
    result = k_anonymise(frame, ["a", "b"], k=2)
    assert result.report.changes == [] and result.report.levels == {"a": 0, "b": 0}
    assert result.frame.astype(str).equals(frame.astype(str))


def test_zip_codes_generalise_by_prefix():
    s = pd.Series(["48067", "10001"])
    levels = zip_hierarchy(5)
    assert levels[0](s).tolist() == ["4806*", "1000*"]
    assert levels[-1](s).tolist() == ["*****", "*****"]


def test_group_sizes_count_rows_sharing_all_values():
    frame = pd.DataFrame({"a": ["x", "x", "y"], "b": [1, 2, 2]})
    assert group_sizes(frame, ["a"]).tolist() == [2, 2, 1]
    assert group_sizes(frame, ["a", "b"]).tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"k": 0}, "'k'"), ({"quasi_identifiers": ["shoe_size"]}, "shoe_size"),
     ({"max_suppression": 2.0}, "'max_suppression'"), ({"quasi_identifiers": []}, "at least one")],
)
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        k_anonymise(_users(), **kwargs)


def test_a_malformed_users_file_names_the_line(tmp_path):
    path = tmp_path / "users.dat"
    path.write_text("1::F::1::10::48067\n2::M::56\n")
    with pytest.raises(MalformedFileError, match="line 2"):
        read_ml1m_users(path)


@pytest.mark.realdata
def test_ml1m_users_become_5_anonymous(shared_datasets):
    path = shared_datasets / "ml-1m" / "users.dat.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    users = read_ml1m_users(path)
    result = k_anonymise(users, k=5)
    assert len(users) == 6040
    assert is_k_anonymous(result.frame, ML1M_QUASI_IDENTIFIERS, 5)
    assert result.report.rows_suppressed <= 0.02 * 6040
    assert result.report.rows_at_risk_before > 5000  # raw attributes single out most shoppers
