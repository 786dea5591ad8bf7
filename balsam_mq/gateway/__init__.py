"""The HTTP gateway: the SDK's backend interface over HTTPS for remote users, each seeing
only what they own, with a live event stream and a status page."""

from balsam_mq.gateway.app import create_app

__all__ = ["create_app"]
