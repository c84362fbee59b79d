"""Data: IDX reader/writer, the digits data set, DVC pull/push."""
