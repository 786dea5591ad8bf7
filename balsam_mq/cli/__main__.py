"""`python -m balsam_mq.cli`: the `balsam-mq` command without the console script."""

from balsam_mq.cli import main

main()
