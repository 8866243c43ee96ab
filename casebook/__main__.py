"""``python -m casebook fit --config configs/<task>.yaml``: the same as the ``casebook`` command."""

from casebook.cli import main

main()
