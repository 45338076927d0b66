"""The docs' results tables and prose values: numbers printed as the docs print them, values
written from their queries; an unknown table, a value without a query or without one row is refused."""
import pandas as pd
import pytest

from multiome_assets import doc_tables, warehouse
from multiome_assets.dataset import PROJECT_ROOT


def test_numbers_print_as_the_docs_print_them():
    assert doc_tables.number(0.12345) == "0.123" and doc_tables.number(1.0) == "1.000"
    assert doc_tables.number(1000) == "1,000" and doc_tables.number(-3e-9) == "-0.000"
    assert doc_tables.number(0.0004, scientific=True) == "4e-4" and doc_tables.number(2.3e-51, scientific=True) == "2e-51"
    assert doc_tables.number(0.028, 2, scientific=True) == "0.03" and doc_tables.number(float("nan")) == ""


def test_an_unknown_table_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown docs table 'nope'"):
        doc_tables.rewritten("<!-- table: nope -->\n<!-- end table -->\n", tmp_path)


PAGE = """The links beat chance by <!-- value: gap -->stale<!-- end value --> over
<!-- value: pairs -->1<!-- end value --> pairs (<!-- value: span -->?<!-- end value -->),
p = <!-- value: tiny -->1<!-- end value -->.

<!-- values
gap: select observed - baseline from link_validation
  where dataset = 'd1' and n = 100
pairs: select count(*) * 1000 from link_validation
span: select printf('%.2f–%.2f', min(observed), max(observed)) from link_validation
tiny: select 0.00004 as p
-->
"""


@pytest.fixture
def tables(tmp_path):
    warehouse.write_table("link_validation", "d1", pd.DataFrame(
        {"n": [100, 200], "observed": [0.31, 0.52], "baseline": [0.2, 0.2]}), root=tmp_path)
    warehouse.refresh_views(tmp_path)
    return tmp_path


def test_prose_values_are_written_from_their_queries(tables):
    new = doc_tables.rewritten(PAGE, tables)
    assert "by <!-- value: gap -->0.110<!-- end value --> over" in new
    assert "<!-- value: pairs -->2,000<!-- end value --> pairs" in new  # an integer: thousands separators
    assert "(<!-- value: span -->0.31–0.52<!-- end value -->)" in new  # text as the query formats it
    assert "p = <!-- value: tiny -->4e-5<!-- end value -->." in new  # a column named p: a p-value
    assert doc_tables.rewritten(new, tables) == new


def test_a_value_without_one_row_or_without_a_query_is_refused(tables):
    with pytest.raises(ValueError, match="one row.*0 row"):
        doc_tables.rewritten(PAGE.replace("n = 100", "n = 7"), tables)
    with pytest.raises(ValueError, match="'other' has no query"):
        doc_tables.rewritten("<!-- value: other -->1<!-- end value -->\n" + PAGE, tables)


def test_the_docs_values_name_their_queries():
    texts = {page: (PROJECT_ROOT / page).read_text() for page in doc_tables.DOCS}
    known = {name for text in texts.values() for name in doc_tables.queries(text)}
    for page, text in texts.items():
        assert {m["name"] for m in doc_tables.VALUE.finditer(text)} <= known, page


def test_a_page_reads_the_values_another_page_defines(tables):
    readme = "Top 100: <!-- value: gap -->?<!-- end value -->.\n"
    assert doc_tables.rewritten(readme, tables, doc_tables.queries(PAGE)) == \
        "Top 100: <!-- value: gap -->0.110<!-- end value -->.\n"
