"""`balsam-mq demo`: a one-command tour that runs shell, Python and postprocessed jobs."""
