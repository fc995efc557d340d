"""Vector indexes: build pieces, search, and the query encoder."""
