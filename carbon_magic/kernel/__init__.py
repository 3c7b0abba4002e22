"""The kernel side: the magics, the cell events, the live panel and the ``%carbon`` subcommands."""
