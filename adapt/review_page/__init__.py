"""The review page: a person works an engine round's review queue in a browser, a key or a drag a decision."""
