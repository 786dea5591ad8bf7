"""ApplicationDefinition: the user's app class (site, command template or run(), hooks),
its ``sync()``, ``submit()`` and ``load_by_site()``.

Defining or loading an app imports no database or broker library: the client, the job
class and the app manager are imported when first used (a hook worker, a ``run()``
process or an MPI rank that only runs the app never loads them).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, cast, overload

from balsam_mq.domain.appspec import app_label, check_job_inputs
from balsam_mq.domain.models import App as AppDocument
from balsam_mq.domain.pipeline import DEFAULT_MOVES, STATE_OF_HOOK
from balsam_mq.domain.queries import Condition, QuerySpec
from balsam_mq.domain.serialization import deserialize_app
from balsam_mq.errors import SerializationError
from balsam_mq.sdk.capture import capturing
from balsam_mq.sdk.definition import app_spec, check_kind, label_of, run_arguments
from balsam_mq.sdk.fields import NEW_JOB_FIELDS

if TYPE_CHECKING:
    from balsam_mq.domain import Job as JobDocument
    from balsam_mq.sdk.job import Job
    from balsam_mq.sdk.managers import AppManager
    from balsam_mq.sdk.resources import App
    from balsam_mq.sdk.view import JobView

T = TypeVar("T")

# keywords of submit() that are Job fields; every other keyword is an app parameter
JOB_KEYWORDS = frozenset(NEW_JOB_FIELDS)


class _OnFirstUse(Generic[T]):
    """A class attribute built when it is first read."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None

    def __get__(self, instance: object, owner: type) -> T:
        if self._value is None:
            self._value = self._build()
        return self._value


def _app_manager() -> AppManager[App]:
    from balsam_mq.sdk.managers import AppManager
    from balsam_mq.sdk.resources import App

    return AppManager(App)


def _load_job_class() -> type[Job]:
    from balsam_mq.sdk.job import Job

    return Job


class ApplicationDefinitionBase:
    """What every app class is, whichever SDK it is used with (``ApplicationDefinition`` of
    ``balsam_mq`` or of ``balsam_mq.blocking``): its attributes, its hooks with their
    default moves, and how a new job of it is built. No I/O."""

    site: ClassVar[Any] = None  # a site name, id, or Site
    command_template: ClassVar[str | None] = None
    environment_variables: ClassVar[dict[str, str]] = {}
    parameters: ClassVar[dict[str, dict[str, Any]]] = {}
    transfers: ClassVar[dict[str, dict[str, Any]]] = {}
    cleanup_files: ClassVar[list[str]] = []
    python_exe: ClassVar[str] = sys.executable  # evaluated where the class is loaded
    # restarts after a failed or timed-out run before the job fails, and the first wait
    max_retries: ClassVar[int] = AppDocument.model_fields["max_retries"].default
    retry_backoff_s: ClassVar[float] = AppDocument.model_fields["retry_backoff_s"].default

    _job_class: ClassVar[type[JobView]]  # the Job class of the SDK the app is used with

    def __init__(self, job: Any) -> None:
        self.job = job

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_kind(cls)

    # --- hooks: the defaults move the job forward -------------------------------------------

    def shell_preamble(self) -> str | list[str]:
        """Shell lines run in the launch shell before the command (modules, exports)."""
        return ""

    def preprocess(self) -> None:
        """STAGED_IN -> PREPROCESSED."""
        self._take_default_move("preprocess")

    def postprocess(self) -> None:
        """RUN_DONE -> POSTPROCESSED."""
        self._take_default_move("postprocess")

    def handle_timeout(self) -> None:
        """RUN_TIMEOUT -> RESTART_READY: run again when there is room (why it timed out is
        kept in ``state_data``)."""
        self._take_default_move("handle_timeout")

    def handle_error(self) -> None:
        """RUN_ERROR -> FAILED, keeping what the launcher recorded (``return_code``,
        ``output_tail``) in ``state_data``."""
        self._take_default_move("handle_error")

    def _take_default_move(self, hook: str) -> None:
        """The move the site agent makes for an app without this hook
        (``domain.pipeline.DEFAULT_MOVES``): an override calling ``super()`` gets it too."""
        move = DEFAULT_MOVES[STATE_OF_HOOK[hook]]
        self.job.state_data = move.state_data(self.job.state_data)
        self.job.state = move.to.value

    # --- new jobs -------------------------------------------------------------------------

    @classmethod
    def _new_job(
        cls, workdir: str, *, save: bool, job_class: type[JobView] | None = None, **kwargs: Any
    ) -> tuple[Any, bool]:
        """A new job of this app (a ``job_class``, by default the app's SDK's) from
        ``submit()``'s arguments (keywords are Job fields or app parameters; missing,
        unknown or malformed inputs are refused here), and whether a capture took it
        (inside a hook: the agent creates it)."""
        parameters = dict(kwargs.pop("parameters", None) or {})
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k in JOB_KEYWORDS}
        parameters.update(kwargs)
        spec = app_spec(cls)
        label = label_of(cls)
        check_job_inputs(spec, label, f"Job {workdir!r}", parameters, fields.get("transfers") or {})
        job_class = job_class or cls._job_class
        captured = capturing() if save else None
        if captured is not None:
            captured_job: Callable[..., Any] = getattr(job_class, "_captured", job_class)
            job = captured_job(workdir, cls, parameters, **fields)
            captured.record(job)
            return job, True
        return job_class(workdir, cls, parameters, **fields), False

    # --- for the launcher -----------------------------------------------------------------

    def _run_with(self, parameters: dict[str, Any]) -> Any:
        """Call ``run()`` with a job's parameters (``*args`` from the list of their name)."""
        args, kwargs = run_arguments(type(self), parameters)
        run: Callable[..., Any] = getattr(self, "run")  # noqa: B009
        return run(*args, **kwargs)


class ApplicationDefinition(ApplicationDefinitionBase):
    """Subclass it to define an app; see the user documentation for every attribute.

    Example::

        class Adder(ApplicationDefinition):
            site = "polaris"

            def run(self, x, y):
                return x + y

        job = await Adder.submit("test/5plus5", x=5, y=5)
        assert await job.result() == 10
    """

    if TYPE_CHECKING:
        objects: ClassVar[AppManager[App]]
        _job_class: ClassVar[type[Job]]
    else:
        objects = _OnFirstUse(_app_manager)
        _job_class = _OnFirstUse(_load_job_class)

    @classmethod
    async def sync(cls) -> None:
        """Store this class at its site, overwriting an earlier version of the same name."""
        from balsam_mq.sdk import refs
        from balsam_mq.sdk.client import get_client

        await refs.sync_class(await get_client(), cls)

    @overload
    @classmethod
    def submit(cls, workdir: str, *, save: Literal[False], **kwargs: Any) -> Job: ...

    @overload
    @classmethod
    def submit(
        cls, workdir: str, *, save: Literal[True] = True, **kwargs: Any
    ) -> Awaitable[Job]: ...

    @classmethod
    def submit(cls, workdir: str, *, save: bool = True, **kwargs: Any) -> Job | Awaitable[Job]:
        """Sync (once per client) and create a job; ``save=False`` returns it unsaved for
        ``Job.objects.bulk_create``. Keywords are Job fields or app parameters; missing,
        unknown or malformed inputs are refused here."""
        job, captured = cls._new_job(workdir, save=save, **kwargs)
        if captured or not save:
            return cast("Job", job)
        return cls._save(job)

    @classmethod
    async def _save(cls, job: Job) -> Job:
        await job.save()
        return job

    @classmethod
    async def load_by_site(cls, site: Any) -> dict[str, type[ApplicationDefinitionBase]]:
        """``{name: class}`` of every app synced at ``site`` (a name, id or Site), usable
        exactly like classes defined here."""
        return await load_classes(site)


async def load_classes(site: Any) -> dict[str, type[ApplicationDefinitionBase]]:
    """``{name: class}`` of every app synced at ``site``, each known to the current client
    as synced (submitting a job of one does not sync it again)."""
    from balsam_mq.sdk import refs
    from balsam_mq.sdk.client import get_client

    client = await get_client()
    found = await refs.lookup_site(client, site, where="load_by_site")
    apps: list[App] = await client.backend.find(
        QuerySpec("apps", (Condition("site_id", "eq", found.id),))
    )
    classes: dict[str, type[ApplicationDefinitionBase]] = {}
    for app in apps:
        label = app_label(app.name, found.name)
        loaded = deserialize_app(app.serialized_class, what=label)
        if not issubclass(loaded, ApplicationDefinitionBase):
            raise SerializationError(f"{label}: stored class is not an ApplicationDefinition")
        refs.remember_app(client, loaded, app)
        classes[app.name] = loaded
    return classes


def app_for_job(app_class: type[ApplicationDefinitionBase], document: JobDocument) -> Any:
    """An instance of ``app_class`` whose ``self.job`` is the user's view of ``document``
    (how hooks and ``run()`` see their job)."""
    return app_class(app_class._job_class._from_document(document))
