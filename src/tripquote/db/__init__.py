"""Engine, tables, the SQLSTATE mapping and the transaction runner."""
