"""The docs' results tables: numbers printed as the docs print them; an unknown table is refused."""
import pytest

from multiome_assets import doc_tables


def test_numbers_print_as_the_docs_print_them():
    assert doc_tables.number(0.12345) == "0.123" and doc_tables.number(1.0) == "1.000"
    assert doc_tables.number(1000) == "1,000" and doc_tables.number(-3e-9) == "-0.000"
    assert doc_tables.number(0.0004, scientific=True) == "4e-4" and doc_tables.number(2.3e-51, scientific=True) == "2e-51"
    assert doc_tables.number(0.028, 2, scientific=True) == "0.03" and doc_tables.number(float("nan")) == ""


def test_an_unknown_table_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown docs table 'nope'"):
        doc_tables.rewritten("<!-- table: nope -->\n<!-- end table -->\n", tmp_path)
