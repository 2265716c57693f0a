"""Loads, versions and unloads SavedModels the way TF Serving's ServerCore does.

One manager owns every model of the current `ModelServerConfig`. A poll
thread lists each `base_path` every `file_system_poll_wait_seconds`, applies
the model's version policy, loads the aspired versions and unloads the rest
with TF Serving's AvailabilityPreservingPolicy: the last ready version is
never unloaded until an aspired one is ready, so a corrupt new version leaves
the old one serving (its status shows END with the load error).
"""

import dataclasses
import logging
import os
import re
import threading
import time

from tensorflow_serving.apis import get_model_status_pb2

from distil_tf.serving.server.options import ConfigError
from distil_tf.serving.server.options import validate_model_server_config
from distil_tf.serving.server.servable import Servable
from distil_tf.serving.server.status import ServingError

logger = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass
class VersionRecord:
    """What GetModelStatus reports for one version, plus the live servable."""

    version: int
    state: int = State.START
    error: ServingError = None
    servable: Servable = None


class ManagedModel:
    """One `config { name base_path policy labels }` entry and its versions."""

    def __init__(self, config):
        self.config = config
        self.versions = {}
        self.labels = {}
        # False once a config reload drops the model: its versions stay, in
        # state END, for GetModelStatus (TF Serving's ServableStateMonitor
        # keeps them), but nothing is served or polled.
        self.active = True
        # version -> directory name under base_path ("00000123" for 123).
        self.directories = {}

    @property
    def name(self):
        return self.config.name

    def available_versions(self):
        return sorted(
            version
            for version, record in self.versions.items()
            if record.state == State.AVAILABLE
        )


_WARNED_MISSING_PATHS = set()


_VERSION_NAME = re.compile(r"[0-9]+")
_INT64_MAX = 2**63 - 1


def list_version_directories(base_path, model_name):
    """Version directories of `base_path`: {version: directory name}.

    file_system_storage_path_source.cc parses names with absl::SimpleAtoi, so
    `00000123` is version 123 (TF Serving's own test data is laid out so);
    names that are not a number, such as the temp dir of an atomic publish
    (".tmp-3"), are skipped.
    """
    try:
        entries = sorted(os.listdir(base_path))
    except OSError:
        # Once per path, not once per poll (every second by default).
        if base_path not in _WARNED_MISSING_PATHS:
            _WARNED_MISSING_PATHS.add(base_path)
            logger.warning(
                "No versions of servable %s found under base path %s", model_name, base_path
            )
        return {}
    versions = {}
    for entry in entries:
        if not os.path.isdir(os.path.join(base_path, entry)):
            continue
        if not _VERSION_NAME.fullmatch(entry) or int(entry) > _INT64_MAX:
            logger.debug(
                "Ignoring %s/%s: not a version number. Did you forget to name "
                "your leaf directory as a number (eg. '/1/')?",
                base_path,
                entry,
            )
            continue
        version = int(entry)
        if version in versions:
            # "123" and "0123" name the same version; keep the first (sorted).
            logger.warning("Ignoring %s/%s: version %d is already served from %s",
                           base_path, entry, version, versions[version])
            continue
        versions[version] = entry
    return versions


def aspired_versions(config, available_on_disk):
    """Applies a ServableVersionPolicy to the versions found on disk."""
    policy = config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(available_on_disk)
    if choice == "specific":
        return set(available_on_disk) & set(policy.specific.versions)
    num_versions = policy.latest.num_versions if choice == "latest" else 1
    num_versions = num_versions or 1
    return set(sorted(available_on_disk)[-num_versions:])


class ModelManager:
    """Owns the models of a ModelServerConfig and resolves ModelSpecs.

    Args:
        options: `ServerOptions` (poll period, load retries, label rules).
        warmup: callable(servable) run after a version loads and before it is
            marked AVAILABLE; raising fails the load (TF Serving's warmup).
        on_unload: callable(servable) run after a version leaves service.
    """

    def __init__(self, options, warmup=None, on_unload=None):
        self.options = options
        self.warmup = warmup
        self.on_unload = on_unload
        self.models = {}
        self._lock = threading.RLock()
        # Serializes reconciliation between the poll thread and config reloads.
        self._reconcile_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    # --- Config --------------------------------------------------------------

    def apply_config(self, config):
        """Replaces the model list; loads new models before returning.

        A model left out of `config` is unloaded; its versions keep reporting
        END. Labels are checked against the versions available once the new
        models have loaded.

        Raises:
            ServingError: INVALID_ARGUMENT for a bad config; FAILED_PRECONDITION
                for a label on an unavailable version; UNKNOWN "N model(s) did
                not become available" when a newly added model cannot be
                loaded (server_core.cc WaitUntilModelsAvailable). The new
                config stays in force in every case but a bad config, as in
                TF Serving.
        """
        try:
            validate_model_server_config(config)
        except ConfigError as error:
            raise ServingError("INVALID_ARGUMENT", str(error))
        wanted = {model.name: model for model in config.model_config_list.config}
        with self._reconcile_lock:
            with self._lock:
                removed = [model for name, model in self.models.items()
                           if name not in wanted and model.active]
                added = []
                for name, model_config in wanted.items():
                    model = self.models.get(name)
                    if model is None:
                        self.models[name] = ManagedModel(model_config)
                        added.append(name)
                    else:
                        if not model.active:
                            added.append(name)
                        model.config = model_config
                        model.active = True
                for model in removed:
                    model.active = False
                    model.labels = {}
            for model in removed:
                for record in model.versions.values():
                    self._unload(model, record)
            for name in wanted:
                self._reconcile(self.models[name])
            self._apply_labels(wanted)
        failed = {name: why for name, why in self.unavailable_models().items()
                  if name in added}
        if failed:
            details = ", ".join(f"{{{name}: {why}}}" for name, why in sorted(failed.items()))
            raise ServingError(
                "UNKNOWN", f"{len(failed)} model(s) did not become available: {{{details}}}"
            )

    def _apply_labels(self, wanted):
        errors = []
        with self._lock:
            for name, model_config in wanted.items():
                model = self.models[name]
                labels = dict(model_config.version_labels)
                available = set(model.available_versions())
                allow = self.options.allow_version_labels_for_unavailable_models
                for label, version in labels.items():
                    # server_core.cc UpdateModelVersionLabelMap: with the flag,
                    # a *new* label may point at an unavailable version, but an
                    # existing label may not be moved to one (it would stop
                    # serving traffic that relies on it).
                    moves_existing = label in model.labels and model.labels[label] != version
                    if version not in available and not (allow and not moves_existing):
                        errors.append(
                            f"Request to assign label to version {version} of "
                            f"model {name}, which is not currently available "
                            "for inference"
                        )
                        break
                else:
                    model.labels = labels
        if errors:
            raise ServingError("FAILED_PRECONDITION", errors[0])

    # --- Polling -------------------------------------------------------------

    def poll_once(self):
        with self._reconcile_lock:
            with self._lock:
                models = [model for model in self.models.values() if model.active]
            for model in models:
                self._reconcile(model)

    def start_polling(self):
        period = self.options.file_system_poll_wait_seconds
        if period <= 0:  # TF Serving: 0 means poll once (done at start).
            return
        self._thread = threading.Thread(
            target=self._poll_loop, args=(period,), name="version-poll", daemon=True
        )
        self._thread.start()

    def _poll_loop(self, period):
        while not self._stop.wait(period):
            try:
                self.poll_once()
            except Exception:  # The poller must outlive any single bad model.
                logger.exception("version poll failed")

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _reconcile(self, model):
        config = model.config
        on_disk = list_version_directories(config.base_path, config.name)
        with self._lock:
            model.directories = on_disk
        aspired = aspired_versions(config, on_disk)
        for version in sorted(aspired, reverse=True):
            record = model.versions.get(version)
            if record is None or record.state == State.END and record.error is None:
                # New, or unloaded earlier and aspired again (policy change).
                self._load(model, version)
        with self._lock:
            aspired_ready = any(
                model.versions[v].state == State.AVAILABLE
                for v in aspired
                if v in model.versions
            )
            to_unload = [
                record
                for version, record in model.versions.items()
                if version not in aspired and record.state == State.AVAILABLE
            ]
        # AvailabilityPreservingPolicy: drop non-aspired versions only once an
        # aspired one serves, or when nothing is aspired any more.
        if aspired_ready or not aspired:
            for record in to_unload:
                self._unload(model, record)

    def _load(self, model, version):
        directory = model.directories.get(version, str(version))
        path = os.path.join(model.config.base_path, directory)
        record = VersionRecord(version=version, state=State.LOADING)
        with self._lock:
            model.versions[version] = record
        attempts = 1 + max(0, self.options.max_num_load_retries)
        for attempt in range(attempts):
            if attempt:
                logger.info("retrying load of %s version %d", model.name, version)
                if self._stop.wait(self.options.load_retry_interval_micros / 1e6):
                    return
            try:
                servable = Servable(model.name, version, path)
                if self.warmup is not None:
                    self.warmup(servable)
            except ServingError as error:
                failure = error
            except Exception as error:  # SavedModel loading raises many kinds.
                failure = ServingError("UNKNOWN", f"{type(error).__name__}: {error}")
            else:
                with self._lock:
                    record.servable = servable
                    record.state = State.AVAILABLE
                logger.info("Successfully loaded servable version {name: %s version: %d}",
                            model.name, version)
                return
        logger.error("Loading servable %s version %d failed: %s",
                     model.name, version, failure.message)
        with self._lock:
            record.state = State.END
            record.error = failure

    def _unload(self, model, record):
        with self._lock:
            servable, record.servable = record.servable, None
            record.state = State.END
            record.error = None
        # In-flight requests hold their own reference, so they finish on the
        # old version before Python frees it (TF Serving's FastReadDynamicPtr).
        if servable is not None:
            logger.info("Unloaded servable version {name: %s version: %d}",
                        model.name, record.version)
            if self.on_unload is not None:
                self.on_unload(servable)

    # --- Requests ------------------------------------------------------------

    def get_servable(self, model_spec):
        """Resolves a ModelSpec to a loaded Servable (TF Serving's messages)."""
        name = model_spec.name
        if not name:
            raise ServingError("INVALID_ARGUMENT", "ModelSpec has no name specified.")
        choice = model_spec.WhichOneof("version_choice")
        with self._lock:
            model = self.models.get(name)
            if model is not None and not model.active:
                model = None
            if choice == "version_label":
                label = model_spec.version_label
                if model is None or label not in model.labels:
                    raise ServingError(
                        "INVALID_ARGUMENT", f"Unrecognized servable version label: {label}"
                    )
                version = model.labels[label]
            elif choice == "version":
                version = model_spec.version.value
            else:
                available = model.available_versions() if model else []
                if not available:
                    raise ServingError(
                        "NOT_FOUND", f"Servable not found for request: Latest({name})"
                    )
                version = available[-1]
            record = model.versions.get(version) if model else None
            if record is None or record.state != State.AVAILABLE:
                raise ServingError(
                    "NOT_FOUND",
                    f"Servable not found for request: Specific({name}, {version})",
                )
            return record.servable

    def version_records(self, name, version=None):
        """Records for GetModelStatus (get_model_status_impl.cc messages)."""
        with self._lock:
            model = self.models.get(name)
            if model is None or not model.versions:
                raise ServingError(
                    "NOT_FOUND", f"Could not find any versions of model {name}"
                )
            if version is not None:
                if version not in model.versions:
                    raise ServingError(
                        "NOT_FOUND", f"Could not find version {version} of model {name}"
                    )
                records = [model.versions[version]]
            else:
                records = sorted(
                    model.versions.values(), key=lambda r: r.version, reverse=True
                )
            return [dataclasses.replace(record) for record in records]

    def model_names(self):
        with self._lock:
            return sorted(name for name, model in self.models.items() if model.active)

    def unavailable_models(self):
        """Names of models without any AVAILABLE version, with their errors."""
        with self._lock:
            missing = {}
            for name, model in self.models.items():
                if model.active and not model.available_versions():
                    errors = [r.error.message for r in model.versions.values() if r.error]
                    missing[name] = errors[0] if errors else "no version found on disk"
            return missing

    def wait_until_available(self, timeout):
        """Blocks until every model serves a version; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.unavailable_models():
                return True
            time.sleep(0.05)
        return not self.unavailable_models()
