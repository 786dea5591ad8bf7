"""What every consumer of a site agent shares: store, site, settings, apps, hook pool."""

from __future__ import annotations

from dataclasses import dataclass

from balsam_mq.domain import Site
from balsam_mq.processors.apps import AppCache
from balsam_mq.processors.hooks import HookRunner
from balsam_mq.sdk.client import Client
from balsam_mq.site.config import SiteConfig
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import Store


@dataclass
class AgentContext:
    store: Store
    site: Site
    site_dir: SiteDirectory
    config: SiteConfig  # replaced when settings.yml is reloaded: read it per batch
    apps: AppCache
    hooks: HookRunner
    client: Client  # the SDK's view of the same store, for jobs that hooks create
