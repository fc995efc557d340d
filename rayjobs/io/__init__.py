"""Reading inputs and writing outputs on local disk or any fsspec URL."""
