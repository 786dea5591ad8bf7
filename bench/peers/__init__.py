"""The systems balsam_mq is measured against, each driven through its own public API."""
