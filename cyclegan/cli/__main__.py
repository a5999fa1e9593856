"""``python -m cyclegan.cli ...``: the ``cyclegan`` command."""

from cyclegan.cli.app import main

main()
