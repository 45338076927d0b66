"""The SQL door reads and does nothing else: every refused statement is named, files outside the
warehouse stay unread, parameters stay data."""
import pandas as pd
import pytest
from click.testing import CliRunner

from multiome_assets import warehouse
from multiome_assets.cli import main as cli


@pytest.fixture
def tables(tmp_path, monkeypatch):
    root = tmp_path / "warehouse"
    monkeypatch.setenv("MULTIOME_WAREHOUSE", str(root))
    warehouse.write_table("prior_edges", "d1", pd.DataFrame({"tf": ["A", "B"], "target": ["x", "y"]}))
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    return root, secret


@pytest.mark.parametrize("statement, refused", [
    ("create table t as select 1", "CREATE"),
    ("insert into prior_edges values ('d1', 'C', 'z')", "INSERT"),
    ("drop view prior_edges", "DROP"),
    ("copy (select * from prior_edges) to 'out.csv'", "COPY"),
    ("attach 'other.duckdb' as other", "ATTACH"),
    ("install httpfs", "LOAD"),
    ("load httpfs", "LOAD"),
    ("set enable_external_access = true", "SET"),
    ("select 1; drop view prior_edges", "DROP"),
])
def test_statements_that_are_not_queries_are_refused_by_name(tables, statement, refused):
    with pytest.raises(warehouse.ReadOnlyError, match=f"refused: a {refused} statement"):
        warehouse.query(statement)
    assert len(warehouse.query("select * from prior_edges")) == 2  # nothing changed


def test_queries_cannot_read_files_outside_the_warehouse(tables):
    root, secret = tables
    import duckdb

    for reader in ("read_csv", "read_text"):
        with pytest.raises(duckdb.PermissionException):
            warehouse.query(f"select * from {reader}('{secret}')")
    # the warehouse's own files stay readable, as the views read them
    assert len(warehouse.query(f"select * from read_parquet('{root}/tables/prior_edges/*.parquet')")) == 2


def test_a_parameter_holding_sql_is_data(tables):
    got = warehouse.query("select count(*) n from prior_edges where tf = $tf", {"tf": "A'; drop view prior_edges; --"})
    assert got.n[0] == 0 and len(warehouse.query("select * from prior_edges")) == 2


def test_the_command_says_what_it_refused_in_one_line(tables):
    out = CliRunner().invoke(cli, ["sql", "copy (select 1) to 'x.csv'"])
    assert out.exit_code != 0 and out.output.strip().splitlines() == [
        "Error: refused: a COPY statement; the warehouse is read-only here (queries only: SELECT, WITH, SHOW, "
        "DESCRIBE, EXPLAIN)"]
    ok = CliRunner().invoke(cli, ["sql", "select tf from prior_edges order by tf", "--csv"])
    assert ok.exit_code == 0 and ok.output == "tf\nA\nB\n"

