"""The read side: each read's SQL and the one shape it returns.

The JSON API, the pages and ``streamfold show`` call these; the API encodes the returned
msgspec structs as they are, so a new column is added in the SQL and in its struct.
"""
