"""``python -m my_data_platform.cli``."""

from my_data_platform.cli.main import main

main()
