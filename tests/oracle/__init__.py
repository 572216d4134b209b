"""Reference implementations kept as test oracles: the record-at-a-time code the columnar
engine replaced. Never imported by ``collector/``."""
