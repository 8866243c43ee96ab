"""What every part of casebook shares and no part owns: imported by datamodules, lightning_modules,
callbacks, the CLI and the benchmarks alike, so it imports none of them.

- `errors`: `DataError`, the one exception for bad input and missing prerequisites (the CLI
  prints it as one line, exit code 2), and `first_line` of any other exception's message;
- `distributed`: `gather_from_ranks`, the Python objects every DDP rank holds;
- `tables`: `markdown_table`, the one table renderer, and `log_table` for a run's report tables;
- `figures`: `log_figure`, a run's figures as PNG and in W&B.
"""
